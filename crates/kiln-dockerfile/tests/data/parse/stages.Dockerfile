ARG BASE=alpine:3.20
ARG A B=2 C="x y"
from --platform=$BUILDPLATFORM ${BASE} as Build
run make
FROM Build AS final
Copy --from=build /out /out
FROM scratch
