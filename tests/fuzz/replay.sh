#!/bin/sh
# replay.sh: (to be written)
exit 0
