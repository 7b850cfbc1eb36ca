// libseccomp (libseccomp-dev), found through pkg-config; only CTLSGateLinux's shim.c uses it.
#include <seccomp.h>
