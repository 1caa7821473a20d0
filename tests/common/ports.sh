# free_port: a loopback port free for TCP and UDP, never the same twice within one ctest run
# (hsm-config/free-ports: each test has its own M2M_PORT_BASE range).
free_port() { "$(dirname "${BASH_SOURCE[0]}")/../../hsm-config/free-ports" 1; }
