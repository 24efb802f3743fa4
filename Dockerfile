# syntax=docker/dockerfile:1
#
# otphub image: a static Go binary on distroless, running as the nonroot
# user (65532), as the Helm chart expects (runAsNonRoot, readOnlyRootFilesystem).
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t otphub:dev .
#   docker run --rm -p 8080:8080 -v otphub-data:/data otphub:dev --addr 0.0.0.0:8080
#
# The image's default data directory is /data (declared as a volume, owned by
# 65532), so the embedded mode works out of the box with a mounted volume.

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
# Dependencies first, so source edits reuse the module cache layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS=linux
ARG TARGETARCH=amd64
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -buildvcs=false -ldflags "-s -w -X main.version=${VERSION}" -o /out/otphub ./cmd/otphub \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="otphub" \
      org.opencontainers.image.description="SMS one-time passwords end to end: auth core, WebSub hub, provider delivery" \
      org.opencontainers.image.source="https://github.com/otphub/otphub" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/otphub /otphub
COPY --from=build --chown=65532:65532 /out/data /data
ENV OTPHUB_DATA_DIR=/data
USER 65532:65532
EXPOSE 8080
VOLUME ["/data"]
ENTRYPOINT ["/otphub", "serve"]
