#include "plugins/sandbox.h"
