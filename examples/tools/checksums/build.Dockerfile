# "build" computes checksums of data/; "runtime" keeps only the result; "debug",
# the last stage (what a build without a target gives), adds the inputs too.
FROM 127.0.0.1:5000/slipway-examples/base:latest AS build
ARG ALGORITHM=sha256
COPY data/ /data/
RUN cd /data && "${ALGORITHM}sum" * > /checksums.txt

FROM 127.0.0.1:5000/slipway-examples/base:latest AS runtime
COPY --from=build /checksums.txt /srv/checksums.txt
CMD ["cat", "/srv/checksums.txt"]

FROM runtime AS debug
COPY --from=build /data/ /srv/data/
