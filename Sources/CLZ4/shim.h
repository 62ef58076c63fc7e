// The parts of the system's liblz4 that Lodestone uses: the frame format API.
#include <lz4.h>
#include <lz4frame.h>
