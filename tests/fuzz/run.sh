#!/bin/sh
# run.sh: (to be written)
exit 0
