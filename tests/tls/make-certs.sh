#!/bin/sh
# Make the certificates the TLS tests use, in DIR, with the openssl
# command: nothing secret is committed. Made once per DIR (a second call
# finds them there). EC P-256 keys: quick to make.
#   ca.pem ca.key           a test CA
#   server.pem server.key   CN=localhost, SAN localhost, 127.0.0.1, ::1; by the CA
#   client.pem client.key   CN=alice,O=ioplex tests; by the CA (mutual TLS)
#   expired.pem expired.key the server's names, but expired; by the CA
#   wrongname.pem wrongname.key  CN/SAN elsewhere.example; by the CA
#   other.pem other.key     a second self-signed certificate (a reload)
set -eu
dir=$1
mkdir -p "$dir"
cd "$dir"
[ -f done ] && exit 0
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
# sign NAME SUBJECT SAN: a certificate for 30 days, by the CA
sign() {
    key "$1.key"
    openssl req -new -key "$1.key" -subj "$2" -out "$1.csr" 2>/dev/null
    printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\n' "$3" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
        -extfile "$1.ext" -out "$1.pem" -days 30 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}
key ca.key
openssl req -x509 -new -key ca.key -subj "/CN=ioplex test CA" -days 30 -out ca.pem 2>/dev/null
sign server "/CN=localhost" "DNS:localhost,IP:127.0.0.1,IP:::1"
sign client "/O=ioplex tests/CN=alice" "DNS:alice"
sign wrongname "/CN=elsewhere.example" "DNS:elsewhere.example"
# Expired: valid for one day in 2020. openssl x509 -req cannot date a
# certificate back in OpenSSL 3.0; the ca command can (-startdate).
key expired.key
openssl req -new -key expired.key -subj "/CN=localhost" -out expired.csr 2>/dev/null
mkdir -p ca.db && : > ca.db/index.txt && echo 01 > ca.db/serial
cat > ca.cnf <<CNF
[ca]
default_ca = test
[test]
database = ca.db/index.txt
serial = ca.db/serial
new_certs_dir = ca.db
default_md = sha256
policy = any
copy_extensions = none
x509_extensions = ext
[any]
commonName = supplied
[ext]
subjectAltName = DNS:localhost,IP:127.0.0.1,IP:::1
CNF
openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key -in expired.csr \
    -out expired.pem -startdate 20200101000000Z -enddate 20200102000000Z 2>/dev/null
rm -rf expired.csr ca.cnf ca.db
key other.key
openssl req -x509 -new -key other.key -subj "/CN=localhost" -days 30 \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" -out other.pem 2>/dev/null
chmod 600 ./*.key
touch done
