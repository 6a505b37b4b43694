FROM scratch
RUN <<EOF
echo hello
# not a comment: part of the script
EOF
RUN <<-EOT
	indented
		twice
	EOT
RUN python3 <<'PY' > /out
print("$HOME")
PY
RUN <<A <<"B" cat - /dev/fd/3 3<<C
a
A
b
B
c
C
COPY <<EOF /etc/motd
Welcome $USER
EOF
COPY --chmod=0755 <<one.sh <<'two.sh' /usr/local/bin/
#!/bin/sh
echo one
one.sh
#!/bin/sh
echo two
two.sh
COPY --from=base /etc/hosts <<E"O"F /etc/
x
EOF
RUN ["<<EOF"]
RUN echo "<<NOTHEREDOC" '<<NOR' <<<THIS
RUN --mount=type=cache,target=/var/cache/apt <<EOF
apt-get update
EOF
ONBUILD RUN <<EOF
echo child
EOF
RUN <<EOF
EOF
RUN cat <<EOF \
  && echo after
continued
EOF
