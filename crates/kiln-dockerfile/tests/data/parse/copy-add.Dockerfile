FROM scratch AS src
FROM scratch
COPY --from=src --chown=1000:1000 --chmod=644 --link /a /b /dest/
COPY --link=false --from=0 /x /y
COPY --parents --exclude=*.md --exclude=*.txt --from=src /src/ /dst/
ADD --checksum=sha256:abc https://example.com/f.tar.gz /tmp/
ADD --keep-git-dir=true --unpack https://github.com/moby/buildkit.git /src
ADD --chown="app user" --link=TRUE https://e.com/a /b
COPY -- --from=x /y
