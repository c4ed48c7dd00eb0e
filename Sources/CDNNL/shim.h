// The oneDNN C API (Debian libdnnl-dev 2.x). Everything SwiftViT computes on the CPU
// goes through the primitives declared here.
#include <oneapi/dnnl/dnnl.h>
