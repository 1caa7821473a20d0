/*
 * Which token objects hold a record, as this process's module numbers them: the part of an
 * m2mhsm_record that the public header keeps opaque. For the library, its provider and its
 * tests; not installed. Applications pass records back to the library whole, so a record
 * stays usable without its objects being searched for again, but no handle reaches them.
 */
#ifndef M2MHSM_KS_RECORD_H
#define M2MHSM_KS_RECORD_H

#include <m2mhsm/keystore.h>

/* may_alias: this view of m2mhsm_record.objects is read and written where the compiler sees
 * the record copied as a whole; it must not assume the two do not overlap. */
typedef struct __attribute__((may_alias)) {
    CK_OBJECT_HANDLE meta;
    CK_OBJECT_HANDLE key[M2MHSM_FORM_COUNT]; /* CK_INVALID_HANDLE where absent */
    unsigned generation; /* the module generation these handles belong to (see fork) */
} ks_objects;

_Static_assert(sizeof(ks_objects) <= sizeof(((m2mhsm_record *)0)->objects),
               "m2mhsm_record.objects is too small for the handles");
_Static_assert(_Alignof(ks_objects) <= _Alignof(uint64_t),
               "m2mhsm_record.objects is not aligned for the handles");

/* The objects of a record (a pointer to one): const for a const record. A record zeroed or
 * built by hand has none (CK_INVALID_HANDLE is 0). */
#define ks_obj(rec)                                                                                \
    _Generic((rec), const m2mhsm_record *: (const ks_objects *)(const void *)&(rec)->objects, \
             default: (ks_objects *)(void *)&(rec)->objects)

#endif
