#!/bin/sh
# cli-real.sh: the command-line cases that need the real llama2.c models (see cli.sh).
exec sh "$(dirname "$0")/cli.sh" real
