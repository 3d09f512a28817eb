#!/bin/sh
# embed-real.sh: the examples/embed cases that need the real llama2.c models (see embed.sh).
exec sh "$(dirname "$0")/embed.sh" real
