# The relay and the clinic agent as one image (see docker-compose.yml).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -o /out/relay ./cmd/relay && CGO_ENABLED=0 go build -o /out/clinic-agent ./cmd/clinic-agent

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/relay /out/clinic-agent /usr/local/bin/
USER nonroot
ENTRYPOINT ["/usr/local/bin/relay"]
