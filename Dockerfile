# The image make image builds, for those who build with Docker:
#   docker build --build-arg VERSION=v0.1.0 -t vigil:v0.1.0 .
# A test (deploy/image) keeps its entrypoint, user, port and volume equal to
# make image's.
FROM golang:1.26 AS build
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
COPY sdk/go.mod sdk/go.sum sdk/
COPY sdk/openfeature/go.mod sdk/openfeature/go.sum sdk/openfeature/
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=
ARG DATE=1970-01-01T00:00:00Z
RUN CGO_ENABLED=0 go build -trimpath \
	-ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT} -X main.date=${DATE}" \
	-o /out/vigil ./cmd/vigil && mkdir /out/data

# distroless/static: CA certificates, /etc/passwd with nonroot (65532), /tmp,
# and no shell.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG COMMIT=
LABEL org.opencontainers.image.title=vigil \
	org.opencontainers.image.version=${VERSION} \
	org.opencontainers.image.revision=${COMMIT} \
	org.opencontainers.image.source=https://github.com/vigil-dev/vigil \
	org.opencontainers.image.licenses=Apache-2.0
COPY --from=build /out/vigil /usr/local/bin/vigil
COPY --from=build --chown=65532:65532 /out/data /data
WORKDIR /data
VOLUME /data
EXPOSE 8080/tcp
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/vigil", "serve", "--addr", "0.0.0.0:8080"]
