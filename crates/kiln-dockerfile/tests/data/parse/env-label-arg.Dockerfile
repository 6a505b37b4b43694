FROM scratch
ENV A=1 B="two words" C=three\ words D='single $x' E=$A${B}
ENV LEGACY value with   spaces "and quotes"
ENV EMPTY= OTHER=""
LABEL org.opencontainers.image.title="Kiln" version=1.0
LABEL "quoted key"="v"
LABEL legacy a label value
ARG X
ARG Y=1 Z="a b"
