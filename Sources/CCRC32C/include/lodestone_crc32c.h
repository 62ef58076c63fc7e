// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as RecordBatch v2 uses it.
//
// Every function takes the CRC of the bytes before `data` (0 for none) and returns the
// CRC of everything so far, so a checksum can be computed in pieces:
//   crc = lodestone_crc32c(0, a, na); crc = lodestone_crc32c(crc, b, nb);
// The check value of the nine bytes "123456789" is 0xE3069283.
#ifndef LODESTONE_CRC32C_H
#define LODESTONE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/// The fastest implementation this processor supports (chosen once, at first use).
uint32_t lodestone_crc32c(uint32_t crc, const void *data, size_t length);

/// The table-driven implementation (slicing by 8), available everywhere.
uint32_t lodestone_crc32c_software(uint32_t crc, const void *data, size_t length);

/// The SSE4.2 implementation. Call only when lodestone_crc32c_hardware_available() is 1.
uint32_t lodestone_crc32c_hardware(uint32_t crc, const void *data, size_t length);

/// 1 when the processor has the CRC32 instruction (x86-64 SSE4.2), else 0.
int lodestone_crc32c_hardware_available(void);

#endif
