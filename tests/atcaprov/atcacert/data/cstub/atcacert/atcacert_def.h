/* Minimal stand-in for CryptoAuthLib's atcacert_def.h, written for atcaprov's tests from the
 * field list in cryptoauth-facts.md section 5.3 (20180718 layout: the 2016 fields plus
 * ca_cert_def). Only used to check that generated C files compile (gcc -fsyntax-only). */
#ifndef ATCACERT_DEF_STUB_H
#define ATCACERT_DEF_STUB_H
#include <stddef.h>
#include <stdint.h>

typedef enum { CERTTYPE_X509 = 0, CERTTYPE_CUSTOM = 1 } atcacert_cert_type_t;
typedef enum {
    SNSRC_STORED = 0x0, SNSRC_STORED_DYNAMIC = 0x7, SNSRC_DEVICE_SN = 0x8,
    SNSRC_SIGNER_ID = 0x9, SNSRC_PUB_KEY_HASH = 0xA, SNSRC_DEVICE_SN_HASH = 0xB,
    SNSRC_PUB_KEY_HASH_POS = 0xC, SNSRC_DEVICE_SN_HASH_POS = 0xD,
    SNSRC_PUB_KEY_HASH_RAW = 0xE, SNSRC_DEVICE_SN_HASH_RAW = 0xF
} atcacert_cert_sn_src_t;
typedef enum {
    DEVZONE_CONFIG = 0, DEVZONE_OTP = 1, DEVZONE_DATA = 2, DEVZONE_NONE = 7
} atcacert_device_zone_t;
typedef enum {
    DATEFMT_ISO8601_SEP = 0, DATEFMT_RFC5280_UTC = 1, DATEFMT_POSIX_UINT32_BE = 2,
    DATEFMT_POSIX_UINT32_LE = 3, DATEFMT_RFC5280_GEN = 4
} atcacert_date_format_t;
typedef enum {
    STDCERT_PUBLIC_KEY, STDCERT_SIGNATURE, STDCERT_ISSUE_DATE, STDCERT_EXPIRE_DATE,
    STDCERT_SIGNER_ID, STDCERT_CERT_SN, STDCERT_AUTH_KEY_ID, STDCERT_SUBJ_KEY_ID,
    STDCERT_NUM_ELEMENTS
} atcacert_std_cert_element_t;

typedef struct {
    atcacert_device_zone_t zone;
    uint8_t slot;
    uint8_t is_genkey;
    uint16_t offset;
    uint16_t count;
} atcacert_device_loc_t;

typedef struct {
    uint16_t offset;
    uint16_t count;
} atcacert_cert_loc_t;

typedef struct {
    char id[16];
    atcacert_device_loc_t device_loc;
    atcacert_cert_loc_t cert_loc;
} atcacert_cert_element_t;

typedef struct atcacert_def_s {
    atcacert_cert_type_t type;
    uint8_t template_id;
    uint8_t chain_id;
    uint8_t private_key_slot;
    atcacert_cert_sn_src_t sn_source;
    atcacert_device_loc_t cert_sn_dev_loc;
    atcacert_date_format_t issue_date_format;
    atcacert_date_format_t expire_date_format;
    atcacert_cert_loc_t tbs_cert_loc;
    uint8_t expire_years;
    atcacert_device_loc_t public_key_dev_loc;
    atcacert_device_loc_t comp_cert_dev_loc;
    atcacert_cert_loc_t std_cert_elements[STDCERT_NUM_ELEMENTS];
    const atcacert_cert_element_t* cert_elements;
    uint8_t cert_elements_count;
    const uint8_t* cert_template;
    uint16_t cert_template_size;
    const struct atcacert_def_s* ca_cert_def;
} atcacert_def_t;

#endif
