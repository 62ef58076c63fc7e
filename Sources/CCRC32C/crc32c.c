// CRC-32C: a slicing-by-8 software path and an SSE4.2 path that runs three independent
// CRC streams over adjacent blocks (the CRC32 instruction has a latency of three cycles
// and a throughput of one per cycle, so three streams keep it busy), then joins them.
//
// Joining rests on linearity. For the raw register (no pre- or post-inversion),
// feeding A then B from register r gives shift(reg(r, A), |B|) XOR reg(0, B), where
// shift(x, n) is the register after feeding n zero bytes from x. shift(., n) is linear
// in x, so it is a 32x32 bit matrix; we store it as four 256-entry tables, one per byte
// of x, built once from the images of the 32 single-bit registers.

#include "lodestone_crc32c.h"

#include <pthread.h>
#include <string.h>

#define POLY 0x82F63B78u
#define LONG_BLOCK 8192
#define SHORT_BLOCK 256

static uint32_t slice_table[8][256];
static uint32_t shift_long_table[4][256];
static uint32_t shift_short_table[4][256];
static int hardware_available;
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static inline uint64_t load_le64(const unsigned char *p) {
    uint64_t value;
    memcpy(&value, p, sizeof value);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    value = __builtin_bswap64(value);
#endif
    return value;
}

/// Feeds `count` zero bytes into the raw register `reg`.
static uint32_t feed_zeros(uint32_t reg, size_t count) {
    while (count--) reg = slice_table[0][reg & 0xff] ^ (reg >> 8);
    return reg;
}

static void build_shift_table(uint32_t table[4][256], size_t zero_count) {
    uint32_t bit_image[32];
    for (int bit = 0; bit < 32; bit++) bit_image[bit] = feed_zeros(1u << bit, zero_count);
    for (int byte_index = 0; byte_index < 4; byte_index++) {
        for (int value = 0; value < 256; value++) {
            uint32_t image = 0;
            for (int bit = 0; bit < 8; bit++) {
                if (value & (1 << bit)) image ^= bit_image[byte_index * 8 + bit];
            }
            table[byte_index][value] = image;
        }
    }
}

static inline uint32_t shift(const uint32_t table[4][256], uint32_t reg) {
    return table[0][reg & 0xff] ^ table[1][(reg >> 8) & 0xff] ^
           table[2][(reg >> 16) & 0xff] ^ table[3][reg >> 24];
}

static void build_tables(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t reg = n;
        for (int k = 0; k < 8; k++) reg = (reg & 1) ? (reg >> 1) ^ POLY : reg >> 1;
        slice_table[0][n] = reg;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t reg = slice_table[0][n];
        for (int k = 1; k < 8; k++) {
            reg = slice_table[0][reg & 0xff] ^ (reg >> 8);
            slice_table[k][n] = reg;
        }
    }
    build_shift_table(shift_long_table, LONG_BLOCK);
    build_shift_table(shift_short_table, SHORT_BLOCK);
#if defined(__x86_64__)
    __builtin_cpu_init();
    hardware_available = __builtin_cpu_supports("sse4.2") ? 1 : 0;
#else
    hardware_available = 0;
#endif
}

static inline void ensure_tables(void) { pthread_once(&tables_once, build_tables); }

uint32_t lodestone_crc32c_software(uint32_t crc, const void *data, size_t length) {
    ensure_tables();
    const unsigned char *p = data;
    uint32_t reg = ~crc;
    while (length && ((uintptr_t)p & 7)) {
        reg = slice_table[0][(reg ^ *p++) & 0xff] ^ (reg >> 8);
        length--;
    }
    while (length >= 8) {
        uint64_t word = load_le64(p) ^ reg;
        reg = slice_table[7][word & 0xff] ^ slice_table[6][(word >> 8) & 0xff] ^
              slice_table[5][(word >> 16) & 0xff] ^ slice_table[4][(word >> 24) & 0xff] ^
              slice_table[3][(word >> 32) & 0xff] ^ slice_table[2][(word >> 40) & 0xff] ^
              slice_table[1][(word >> 48) & 0xff] ^ slice_table[0][word >> 56];
        p += 8;
        length -= 8;
    }
    while (length--) reg = slice_table[0][(reg ^ *p++) & 0xff] ^ (reg >> 8);
    return ~reg;
}

#if defined(__x86_64__)
#include <nmmintrin.h>

__attribute__((target("sse4.2")))
static uint64_t three_streams(uint64_t reg, const unsigned char **cursor, size_t *length,
                              size_t block, const uint32_t table[4][256]) {
    const unsigned char *p = *cursor;
    while (*length >= 3 * block) {
        uint64_t reg1 = 0, reg2 = 0;
        const unsigned char *end = p + block;
        do {
            reg = _mm_crc32_u64(reg, load_le64(p));
            reg1 = _mm_crc32_u64(reg1, load_le64(p + block));
            reg2 = _mm_crc32_u64(reg2, load_le64(p + 2 * block));
            p += 8;
        } while (p < end);
        reg = shift(table, (uint32_t)reg) ^ (uint32_t)reg1;
        reg = shift(table, (uint32_t)reg) ^ (uint32_t)reg2;
        p += 2 * block;
        *length -= 3 * block;
    }
    *cursor = p;
    return reg;
}

__attribute__((target("sse4.2")))
uint32_t lodestone_crc32c_hardware(uint32_t crc, const void *data, size_t length) {
    ensure_tables();
    const unsigned char *p = data;
    uint64_t reg = (uint32_t)~crc;
    while (length && ((uintptr_t)p & 7)) {
        reg = _mm_crc32_u8((uint32_t)reg, *p++);
        length--;
    }
    reg = three_streams(reg, &p, &length, LONG_BLOCK, shift_long_table);
    reg = three_streams(reg, &p, &length, SHORT_BLOCK, shift_short_table);
    while (length >= 8) {
        reg = _mm_crc32_u64(reg, load_le64(p));
        p += 8;
        length -= 8;
    }
    while (length--) reg = _mm_crc32_u8((uint32_t)reg, *p++);
    return ~(uint32_t)reg;
}
#else
uint32_t lodestone_crc32c_hardware(uint32_t crc, const void *data, size_t length) {
    return lodestone_crc32c_software(crc, data, length);
}
#endif

int lodestone_crc32c_hardware_available(void) {
    ensure_tables();
    return hardware_available;
}

uint32_t lodestone_crc32c(uint32_t crc, const void *data, size_t length) {
    ensure_tables();
    if (hardware_available) return lodestone_crc32c_hardware(crc, data, length);
    return lodestone_crc32c_software(crc, data, length);
}
