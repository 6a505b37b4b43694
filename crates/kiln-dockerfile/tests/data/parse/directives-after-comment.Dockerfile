# a comment first: no directive after it
# escape=`
FROM scratch
RUN echo a\
b
