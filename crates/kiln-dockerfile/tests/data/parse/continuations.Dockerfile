FROM scratch
RUN apt-get update && \   	
    apt-get install -y curl
RUN echo start \
# a comment inside the instruction is dropped
    middle \

   	
    end
RUN echo not-continued\\
RUN printf 'a' \
\
  'b'
  RUN   echo   indented
RUN echo "# not a comment" # nor this
ENV LAST=1 \
