// The parts of the system's liblz4 that Lodestone uses: the frame format API (whose
// compression levels 3 to 12 are lz4hc's high-compression compressor).
#include <lz4.h>
#include <lz4frame.h>
