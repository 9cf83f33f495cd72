#!/bin/sh
# Entry point of a ci-worker container started by a DockerLatentWorker: the master passes its
# worker endpoint, the worker's name and password in the environment.  The worker runs in the
# foreground as the container's main process: when the master tells it to leave, it exits and
# so does the container.
set -eu
: "${CI_MASTER_URL:?CI_MASTER_URL (the master's ws://host:port/worker) is not set}"
: "${CI_WORKER_NAME:?CI_WORKER_NAME is not set}"
: "${CI_WORKER_PASSWORD:?CI_WORKER_PASSWORD is not set}"
dir="${CI_WORKER_DIR:-/worker/$CI_WORKER_NAME}"
rm -f "$dir/worker.cfg"
printf '%s\n' "$CI_WORKER_PASSWORD" | ci-worker create-worker "$dir" --master "$CI_MASTER_URL" \
    --name "$CI_WORKER_NAME" --password-stdin --max-builds "${CI_WORKER_MAX_BUILDS:-1}" >/dev/null
unset CI_WORKER_PASSWORD
exec ci-worker start --nodaemon "$dir"
