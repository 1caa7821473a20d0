# Token kind "softokn": NSS softokn (package libnss3; certutil from libnss3-tools). Each token
# is an NSS database DIR/nss-LABEL, reached by passing C_Initialize the init args that name it;
# dbTokenDescription gives its token the label (NSS otherwise calls it "NSS Certificate DB").
# A process initialises softokn once, so one process reaches one of these tokens: lab.env
# carries each token's args (M2M_<TOKEN>_INIT_ARGS), the service configs their own
# module_init_args. NSS has no SO PIN of its own: certutil -N sets the user PIN only.
# See hsm-config/kinds/softhsm.sh for the interface.

KIND_MODULE=/usr/lib/x86_64-linux-gnu/libsoftokn3.so
KIND_PIN_CHARS=24
KIND_EC=1

kind_prepare() { need certutil; }

kind_make_token() {
    local dir=$1 label=$2 pin=$4
    mkdir -p -- "$dir/nss-$label"
    quiet "making the NSS database for token '$label'" \
        certutil -N -d "sql:$dir/nss-$label" -f "$pin"
}

kind_token_uri() { printf 'pkcs11:token=%s\n' "$2"; }

kind_init_args() {
    printf "configdir='sql:%s/nss-%s' certPrefix='' keyPrefix='' secmod='secmod.db' flags= dbTokenDescription='%s'\n" \
        "$1" "$2" "$2"
}

# certutil generates the key in the database (sensitive, non-extractable) and a CSR signed by
# it; lab.sh issues the certificate, and importing it names the key KEY_LABEL (NSS labels a
# private key with its certificate's nickname). The public key comes from the CSR.
kind_keypair() {
    local dir=$1 label=$2 key_label=$3 pub=$5
    head -c 64 /dev/urandom > "$tmp/noise"
    quiet "generating the $key_label key pair in token '$label'" \
        certutil -R -k ec -q nistp256 -d "sql:$dir/nss-$label" -f "$dir/$label.pin" \
        -z "$tmp/noise" -s "CN=$key_label" -o "$tmp/$key_label.csr"
    quiet "reading the $key_label public key" \
        openssl req -inform DER -in "$tmp/$key_label.csr" -noout -pubkey -out "$tmp/$key_label.pub.pem"
    openssl pkey -pubin -in "$tmp/$key_label.pub.pem" -outform DER -out "$pub"
    KIND_KEY_NICK[$label]=$key_label
}

# After lab.sh issued the certificate: import it with the key's label as nickname.
kind_keypair_done() {
    local dir=$1 label=$2 crt=$3
    quiet "importing $crt into token '$label'" \
        certutil -A -d "sql:$dir/nss-$label" -f "$dir/$label.pin" -n "${KIND_KEY_NICK[$label]}" \
        -t ,, -a -i "$crt"
}

kind_env() { :; }
kind_start() { :; }
kind_stop() { :; }
kind_clean() { :; }
declare -gA KIND_KEY_NICK=()
