#!/bin/sh
# The example's "application": prints its greeting and version.
echo "${GREETING:-hello} from gantry's example, version $(cat "$(dirname "$0")/../VERSION")"
