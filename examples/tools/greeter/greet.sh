#!/bin/sh
# Prints the greeting chosen at build time (ARG GREETING), then the arguments.
echo "$(cat /etc/greeting), $*!"
