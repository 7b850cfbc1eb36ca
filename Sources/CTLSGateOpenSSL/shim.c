#include "CTLSGateOpenSSL.h"
