FROM scratch
RUN ["echo", "hi"]
RUN [ "sh", "-c", "echo \"$HOME\"" ]
RUN ['single', 'quotes']
RUN [not json
CMD []
CMD ["a"] trailing
ENTRYPOINT ["/bin/app", "--flag", "\u00e9"]
ENTRYPOINT /bin/app --flag
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
VOLUME ["/data", "/logs"]
VOLUME /a /b
COPY ["a b", "/dest dir/"]
