# The image of make image, from the binary goreleaser built for the platform
# (.goreleaser.yaml); a test keeps it equal to make image's.
FROM gcr.io/distroless/static-debian12:nonroot
ARG TARGETPLATFORM
COPY ${TARGETPLATFORM}/vigil /usr/local/bin/vigil
USER 65532:65532
# Created as the user above, so the volume it becomes is writable by vigil.
WORKDIR /data
VOLUME /data
EXPOSE 8080/tcp
ENTRYPOINT ["/usr/local/bin/vigil", "serve", "--addr", "0.0.0.0:8080"]
