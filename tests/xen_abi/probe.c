/*
 * ABI probe for tests/test_xen_abi.py: prints "KEY VALUE" lines with the sizes,
 * offsets and constants of Xen's public headers as installed by libxen-dev, so the
 * test can compare them with emu/xen/abi.py.
 *
 * Both blkif ABIs are declared here the way a backend serving foreign guests has to:
 * the x86_32 variant under 4-byte packing (what i386 gives u64 members), the x86_64
 * variant with explicit 8-byte alignment, each built from the headers' own types and
 * constants.  That keeps the probe independent of the compiler's target (no -m32).
 */
/* ring.h's barriers; single-threaded here, but the macros must expand */
#define mb()  __sync_synchronize()
#define rmb() __sync_synchronize()
#define wmb() __sync_synchronize()

#include <errno.h>      /* before xs_wire.h: it only defines xsd_errors when EINVAL is known */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <xen/xen.h>
#include <xen/grant_table.h>
#include <xen/io/ring.h>
#include <xen/io/blkif.h>
#include <xen/io/protocols.h>
#include <xen/io/xenbus.h>
#include <xen/io/xs_wire.h>

#define I(name)        printf("%s %lld\n", #name, (long long)(name))
#define S(name)        printf("%s %s\n", #name, name)
#define SZ(type)       printf("sizeof:%s %zu\n", #type, sizeof(struct type))
#define USZ(type)      printf("sizeof:%s %zu\n", #type, sizeof(union type))
#define OFF(type, fld) printf("offsetof:%s:%s %zu\n", #type, #fld, offsetof(struct type, fld))

/* ---- x86_32: u64 members only 4-byte aligned ---- */
#pragma pack(push, 4)
struct blkif_x86_32_request {
    uint8_t        operation;
    uint8_t        nr_segments;
    blkif_vdev_t   handle;
    uint64_t       id;
    blkif_sector_t sector_number;
    struct blkif_request_segment seg[BLKIF_MAX_SEGMENTS_PER_REQUEST];
};
struct blkif_x86_32_request_discard {
    uint8_t        operation;
    uint8_t        flag;
    blkif_vdev_t   handle;
    uint64_t       id;
    blkif_sector_t sector_number;
    uint64_t       nr_sectors;
};
struct blkif_x86_32_request_indirect {
    uint8_t        operation;
    uint8_t        indirect_op;
    uint16_t       nr_segments;
    uint64_t       id;
    blkif_sector_t sector_number;
    blkif_vdev_t   handle;
    grant_ref_t    indirect_grefs[BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST];
    uint64_t       pad;            /* blkif.h's __i386__ padding to 64 bytes */
};
struct blkif_x86_32_response {
    uint64_t       id;
    uint8_t        operation;
    int16_t        status;
};
#pragma pack(pop)

/* ---- x86_64: natural alignment, spelled out so an i386 build agrees too ---- */
#define A8 __attribute__((__aligned__(8)))
struct blkif_x86_64_request {
    uint8_t        operation;
    uint8_t        nr_segments;
    blkif_vdev_t   handle;
    uint64_t A8    id;
    blkif_sector_t sector_number;
    struct blkif_request_segment seg[BLKIF_MAX_SEGMENTS_PER_REQUEST];
};
struct blkif_x86_64_request_discard {
    uint8_t        operation;
    uint8_t        flag;
    blkif_vdev_t   handle;
    uint64_t A8    id;
    blkif_sector_t sector_number;
    uint64_t       nr_sectors;
};
struct blkif_x86_64_request_indirect {
    uint8_t        operation;
    uint8_t        indirect_op;
    uint16_t       nr_segments;
    uint64_t A8    id;
    blkif_sector_t sector_number;
    blkif_vdev_t   handle;
    grant_ref_t    indirect_grefs[BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST];
};
struct blkif_x86_64_response {
    uint64_t A8    id;
    uint8_t        operation;
    int16_t        status;
};

DEFINE_RING_TYPES(blkif_x86_32, struct blkif_x86_32_request, struct blkif_x86_32_response);
DEFINE_RING_TYPES(blkif_x86_64, struct blkif_x86_64_request, struct blkif_x86_64_response);

static void blkif(void)
{
    static union { struct blkif_sring s; char page[4096]; } native;
    static union { struct blkif_x86_32_sring s; char page[4096]; } r32;
    static union { struct blkif_x86_64_sring s; char page[4096]; } r64;

    I(BLKIF_OP_READ); I(BLKIF_OP_WRITE); I(BLKIF_OP_WRITE_BARRIER);
    I(BLKIF_OP_FLUSH_DISKCACHE); I(BLKIF_OP_RESERVED_1); I(BLKIF_OP_DISCARD);
    I(BLKIF_OP_INDIRECT); I(BLKIF_DISCARD_SECURE);
    I(BLKIF_MAX_SEGMENTS_PER_REQUEST); I(BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST);
    I(BLKIF_RSP_EOPNOTSUPP); I(BLKIF_RSP_ERROR); I(BLKIF_RSP_OKAY);
    I(VDISK_CDROM); I(VDISK_REMOVABLE); I(VDISK_READONLY);

    SZ(blkif_request_segment);
    OFF(blkif_request_segment, gref);
    OFF(blkif_request_segment, first_sect);
    OFF(blkif_request_segment, last_sect);

#define REQ(t) SZ(t); OFF(t, operation); OFF(t, nr_segments); OFF(t, handle); \
               OFF(t, id); OFF(t, sector_number); OFF(t, seg)
#define DISC(t) SZ(t); OFF(t, operation); OFF(t, flag); OFF(t, handle); OFF(t, id); \
                OFF(t, sector_number); OFF(t, nr_sectors)
#define IND(t) SZ(t); OFF(t, operation); OFF(t, indirect_op); OFF(t, nr_segments); \
               OFF(t, id); OFF(t, sector_number); OFF(t, handle); OFF(t, indirect_grefs)
#define RSP(t) SZ(t); OFF(t, id); OFF(t, operation); OFF(t, status)
    REQ(blkif_x86_32_request);  REQ(blkif_x86_64_request);  REQ(blkif_request);
    DISC(blkif_x86_32_request_discard); DISC(blkif_x86_64_request_discard);
    DISC(blkif_request_discard);
    IND(blkif_x86_32_request_indirect); IND(blkif_x86_64_request_indirect);
    IND(blkif_request_indirect);
    RSP(blkif_x86_32_response); RSP(blkif_x86_64_response); RSP(blkif_response);

    USZ(blkif_x86_32_sring_entry);
    USZ(blkif_x86_64_sring_entry);
    USZ(blkif_sring_entry);

    /* shared ring header: identical for every ring type */
    OFF(blkif_sring, req_prod); OFF(blkif_sring, req_event);
    OFF(blkif_sring, rsp_prod); OFF(blkif_sring, rsp_event);
    OFF(blkif_sring, pvt); OFF(blkif_sring, __pad); OFF(blkif_sring, ring);
    OFF(blkif_x86_32_sring, ring); OFF(blkif_x86_64_sring, ring);

    printf("ring_size:blkif_x86_32 %lu\n", (unsigned long)__RING_SIZE(&r32.s, 4096));
    printf("ring_size:blkif_x86_64 %lu\n", (unsigned long)__RING_SIZE(&r64.s, 4096));
    printf("ring_size:blkif %lu\n", (unsigned long)__RING_SIZE(&native.s, 4096));
    printf("const_ring_size:blkif_x86_32 %lu\n", (unsigned long)__CONST_RING_SIZE(blkif_x86_32, 4096));
    printf("const_ring_size:blkif_x86_64 %lu\n", (unsigned long)__CONST_RING_SIZE(blkif_x86_64, 4096));

    /* SHARED_RING_INIT's starting values */
    SHARED_RING_INIT(&r64.s);
    printf("init:req_prod %u\ninit:req_event %u\ninit:rsp_prod %u\ninit:rsp_event %u\n",
           r64.s.req_prod, r64.s.req_event, r64.s.rsp_prod, r64.s.rsp_event);

    S(XEN_IO_PROTO_ABI_X86_32);
    S(XEN_IO_PROTO_ABI_X86_64);
    S(XEN_IO_PROTO_ABI_ARM);
    S(XEN_IO_PROTO_ABI_NATIVE);
}

/*
 * Run the real notification macros over index triples (including u32 wrap-around) so
 * the test can compare emu/xen/abi.py's pure-function versions with them.
 */
static const RING_IDX idx_samples[] = {
    0, 1, 2, 3, 5, 31, 32, 33, 0x7fffffffu, 0x80000000u, 0xfffffffeu, 0xffffffffu,
};
#define NSAMPLES (sizeof(idx_samples) / sizeof(idx_samples[0]))

static void ring_math(void)
{
    static union { struct blkif_sring s; char page[4096]; } page;
    struct blkif_front_ring front;
    struct blkif_back_ring back;
    size_t a, b, c;
    int notify, work;

    for (a = 0; a < NSAMPLES; a++)
        for (b = 0; b < NSAMPLES; b++)
            for (c = 0; c < NSAMPLES; c++) {
                RING_IDX old = idx_samples[a], new = idx_samples[b], ev = idx_samples[c];

                page.s.req_prod = old;
                page.s.req_event = ev;
                front.sring = &page.s;
                front.nr_ents = 32;
                front.req_prod_pvt = new;
                RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&front, notify);
                printf("notify:%u:%u:%u %d\n", old, new, ev, notify ? 1 : 0);
            }

    for (a = 0; a < NSAMPLES; a++)
        for (b = 0; b < NSAMPLES; b++) {
            RING_IDX prod = idx_samples[a], cons = idx_samples[b];

            page.s.rsp_prod = prod;
            page.s.rsp_event = 12345;
            front.sring = &page.s;
            front.nr_ents = 32;
            front.rsp_cons = cons;
            RING_FINAL_CHECK_FOR_RESPONSES(&front, work);
            printf("final_rsp:%u:%u %d %u\n", prod, cons, work ? 1 : 0, page.s.rsp_event);
        }

    for (a = 0; a < NSAMPLES; a++)
        for (b = 0; b < NSAMPLES; b++)
            for (c = 0; c < NSAMPLES; c++) {
                RING_IDX prod = idx_samples[a], cons = idx_samples[b], pvt = idx_samples[c];

                page.s.req_prod = prod;
                page.s.req_event = 12345;
                back.sring = &page.s;
                back.nr_ents = 32;
                back.req_cons = cons;
                back.rsp_prod_pvt = pvt;
                printf("unconsumed_req:%u:%u:%u %u %d %d\n", prod, cons, pvt,
                       (unsigned)RING_HAS_UNCONSUMED_REQUESTS(&back),
                       RING_REQUEST_PROD_OVERFLOW(&back, prod) ? 1 : 0,
                       RING_REQUEST_CONS_OVERFLOW(&back, cons) ? 1 : 0);
                RING_FINAL_CHECK_FOR_REQUESTS(&back, work);
                printf("final_req:%u:%u:%u %d %u\n", prod, cons, pvt, work ? 1 : 0,
                       page.s.req_event);
            }
}

static void grants(void)
{
    SZ(grant_entry_v1);
    OFF(grant_entry_v1, flags); OFF(grant_entry_v1, domid); OFF(grant_entry_v1, frame);
    I(GNTTAB_NR_RESERVED_ENTRIES); I(GNTTAB_RESERVED_CONSOLE); I(GNTTAB_RESERVED_XENSTORE);
    I(GTF_invalid); I(GTF_permit_access); I(GTF_accept_transfer); I(GTF_transitive);
    I(GTF_type_mask);
    I(_GTF_readonly); I(GTF_readonly); I(_GTF_reading); I(GTF_reading);
    I(_GTF_writing); I(GTF_writing); I(_GTF_PWT); I(GTF_PWT); I(_GTF_PCD); I(GTF_PCD);
    I(_GTF_PAT); I(GTF_PAT); I(_GTF_sub_page); I(GTF_sub_page);
    I(_GTF_transfer_committed); I(GTF_transfer_committed);
    I(_GTF_transfer_completed); I(GTF_transfer_completed);
    I(GNTST_okay); I(GNTST_general_error); I(GNTST_bad_domain); I(GNTST_bad_gntref);
    I(GNTST_bad_handle); I(GNTST_bad_virt_addr); I(GNTST_bad_dev_addr);
    I(GNTST_no_device_space); I(GNTST_permission_denied); I(GNTST_bad_page);
    I(GNTST_bad_copy_arg); I(GNTST_address_too_big); I(GNTST_eagain); I(GNTST_no_space);
    I(DOMID_FIRST_RESERVED); I(DOMID_SELF); I(DOMID_IO); I(DOMID_XEN); I(DOMID_COW);
    I(DOMID_INVALID); I(DOMID_IDLE);
}

static void xenbus(void)
{
    I(XenbusStateUnknown); I(XenbusStateInitialising); I(XenbusStateInitWait);
    I(XenbusStateInitialised); I(XenbusStateConnected); I(XenbusStateClosing);
    I(XenbusStateClosed); I(XenbusStateReconfiguring); I(XenbusStateReconfigured);
}

static void xenstore(void)
{
    size_t i;

    SZ(xsd_sockmsg);
    OFF(xsd_sockmsg, type); OFF(xsd_sockmsg, req_id); OFF(xsd_sockmsg, tx_id);
    OFF(xsd_sockmsg, len);
    I(XS_CONTROL); I(XS_DEBUG); I(XS_DIRECTORY); I(XS_READ); I(XS_GET_PERMS); I(XS_WATCH);
    I(XS_UNWATCH); I(XS_TRANSACTION_START); I(XS_TRANSACTION_END); I(XS_INTRODUCE);
    I(XS_RELEASE); I(XS_GET_DOMAIN_PATH); I(XS_WRITE); I(XS_MKDIR); I(XS_RM);
    I(XS_SET_PERMS); I(XS_WATCH_EVENT); I(XS_ERROR); I(XS_IS_DOMAIN_INTRODUCED);
    I(XS_RESUME); I(XS_SET_TARGET); I(XS_RESET_WATCHES); I(XS_DIRECTORY_PART);
    I(XS_TYPE_COUNT); I(XS_INVALID);
    S(XS_WRITE_NONE); S(XS_WRITE_CREATE); S(XS_WRITE_CREATE_EXCL);
    I(XS_WATCH_PATH); I(XS_WATCH_TOKEN);
    I(XENSTORE_RING_SIZE); I(XENSTORE_PAYLOAD_MAX); I(XENSTORE_ABS_PATH_MAX);
    I(XENSTORE_REL_PATH_MAX);
    I(XENSTORE_SERVER_FEATURE_RECONNECTION); I(XENSTORE_SERVER_FEATURE_ERROR);
    I(XENSTORE_CONNECTED); I(XENSTORE_RECONNECT);
    I(XENSTORE_ERROR_NONE); I(XENSTORE_ERROR_COMM); I(XENSTORE_ERROR_RINGIDX);
    I(XENSTORE_ERROR_PROTO);
    for (i = 0; i < sizeof(xsd_errors) / sizeof(xsd_errors[0]); i++)
        printf("xsd_errors:%zu %s %d\n", i, xsd_errors[i].errstring, xsd_errors[i].errnum);
    printf("xsd_errors:count %zu\n", sizeof(xsd_errors) / sizeof(xsd_errors[0]));
}

int main(void)
{
    blkif();
    ring_math();
    grants();
    xenbus();
    xenstore();
    return 0;
}
