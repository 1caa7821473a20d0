# Token kind "softokn": NSS softokn (package libnss3; certutil from libnss3-tools). Each token
# is an NSS database DIR/nss-LABEL, reached by passing C_Initialize the init args that name it;
# dbTokenDescription gives its token the label (NSS otherwise calls it "NSS Certificate DB").
# A process initialises softokn once, with one init args string: lab.env carries each token's
# args (M2M_<TOKEN>_INIT_ARGS), the service configs their own module_init_args, and
# M2M_INIT_ARGS names every token at once (kind_env). NSS has no SO PIN of its own: certutil -N sets the user PIN only.
# See hsm-config/kinds/softhsm.sh for the interface.

KIND_MODULE=/usr/lib/x86_64-linux-gnu/libsoftokn3.so
KIND_PIN_CHARS=24
KIND_EC=0 # see kind_keypair
# softokn fails the services' start-up self-test (a non-extractable key can be copied into an
# extractable one and wrapped out: docs/tokens.md, "Self-test"): the lab's configurations say
# that they accept it ("accept_extractable_keys": true), and the services warn at every start.
KIND_ACCEPT_EXTRACTABLE=1

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

# softokn has EC, but the lab has no tool that makes a *labelled* key pair in a softokn
# database: certutil generates keys without CKA_LABEL (a certificate's nickname is not the
# key's label, and the services find their key by label), and pkcs11-tool cannot pass init
# args. So, as for opencryptoki, the servers' TLS keys go on SoftHSM tokens beside it.
kind_keypair() { die "softokn: no labelled key pair tool (see hsm-config/kinds/softokn.sh)"; }

# One init args string for a process that uses several of DIR's tokens (a test making two
# stores): a process initialises softokn once, and NSS's "tokens=" parameter (slot IDs from
# 4, each with its own configdir and tokenDescription) opens every database at that once.
kind_env() {
    local dir=$1 t slot=4 list=""
    for t in "${TOKENS[@]}"; do
        list+=$(printf "0x%02x=[configdir='sql:%s/nss-%s' certPrefix='' keyPrefix='' tokenDescription='%s'] " \
            "$slot" "$dir" "$t" "$t")
        slot=$((slot + 1))
    done
    env_line M2M_INIT_ARGS "configdir='sql:$dir/nss-${TOKENS[0]}' certPrefix='' keyPrefix='' secmod='secmod.db' flags= tokens=<${list% }>"
}
kind_start() { :; }
kind_stop() { :; }
kind_clean() { :; }
