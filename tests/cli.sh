#!/bin/sh
# cli.sh: (to be written)
exit 0
