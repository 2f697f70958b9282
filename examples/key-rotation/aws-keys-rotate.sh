#!/bin/sh
# Writes a week of SigV4 signing keys (yesterday .. +6 days) for
# aws_signing_key_file and reloads nginx. Run daily where the IAM secret
# lives; only the derived keys reach nginx.
#   AWS_SECRET_FILE  file holding the secret access key (default /etc/nginx/aws-secret)
#   AWS_REGION       region of the keys (default us-east-1)
#   KEY_FILE         the file nginx reads (default /etc/nginx/aws-keys)
#   KEYTOOL          path of scripts/generate_signing_key
set -eu
AWS_SECRET_FILE=${AWS_SECRET_FILE:-/etc/nginx/aws-secret}
AWS_REGION=${AWS_REGION:-us-east-1}
KEY_FILE=${KEY_FILE:-/etc/nginx/aws-keys}
KEYTOOL=${KEYTOOL:-/usr/local/bin/generate_signing_key}

yesterday=$(date -u -d yesterday +%Y%m%d)
"$KEYTOOL" -k "$(cat "$AWS_SECRET_FILE")" -r "$AWS_REGION" -d "$yesterday" --days 8 -o "$KEY_FILE.new"
chgrp "$(stat -c %G "$KEY_FILE" 2>/dev/null || echo root)" "$KEY_FILE.new"
mv "$KEY_FILE.new" "$KEY_FILE"          # atomic on one filesystem
nginx -t -q && nginx -s reload
