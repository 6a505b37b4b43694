FROM scratch
ONBUILD RUN make
ONBUILD COPY --from=builder /a /b
onbuild  add . /app
EXPOSE 80 443/udp 8000-8010 ${PORT}
WORKDIR /srv/my app
USER app:app
STOPSIGNAL SIGQUIT
MAINTAINER Jane Doe <jane@example.com>
SHELL ["pwsh", "-Command"]
RUN Write-Host hi
CMD echo 'done'
