# escape=`
FROM scratch
RUN echo crlf `
  done
ENV A=1
