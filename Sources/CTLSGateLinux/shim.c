#include "CTLSGateLinux.h"
