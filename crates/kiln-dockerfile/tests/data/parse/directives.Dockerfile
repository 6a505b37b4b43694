# syntax=docker/dockerfile:1
# check=skip=all
#ESCAPE = `
FROM mcr.microsoft.com/windows/servercore:ltsc2022 `
  AS Base
# escape=\ is an ordinary comment here
RUN echo one `
    two\
ENV PATH=C:\bin `
    HOME="C:\Users\app"
RUN echo keep``
