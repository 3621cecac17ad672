/*
 * libusb-1.0.so.0 stand-in: the libusb 1.0.26 C ABI, forwarding every device operation to
 * keyline's device simulator over a Unix socket, so that unmodified programs (Debian's dfu-util,
 * keyline's `USB` target) run against simulated Particle devices on machines with no USB bus.
 *
 * Load it with LD_LIBRARY_PATH=<dir holding this libusb-1.0.so.0> and point it at a simulator
 * (`keyline-sim serve --socket PATH`) with KEYLINE_SIM_SOCKET=PATH. Without that variable it
 * behaves like libusb on a machine with no USB devices: init succeeds, every list is empty.
 * KEYLINE_STANDIN_DEBUG=1 logs each call to stderr.
 *
 * Struct layouts and prototypes come from the real <libusb.h> (1.0.26), so the ABI matches by
 * construction; the opaque types (context, device, handle) are ours, as libusb allows
 * (see ../shared/docs/reference/dfu-protocol.md §4).
 *
 * ---------------------------------------------------------------------------------------------
 * Wire protocol (version 1). The server side is Sources/Simulator/StandInServer.swift; keep the
 * two descriptions identical.
 *
 * Unix stream socket. Every message is a frame: u32 length (of what follows), then the body.
 * All integers little-endian. The client sends one request and reads one reply; a connection
 * carries one request at a time. The stand-in uses one connection per libusb context (device
 * lists) and one per open device handle, so transfers to different devices run in parallel.
 *
 * Request body:  u8 op, u32 device id, then per op:
 *   1 LIST       (device id 0)          -> result = number of devices; payload = per device:
 *                                          u32 id, u8 bus, u8 address, u8 port count,
 *                                          u8 ports[7], u8 device descriptor[18],
 *                                          u16 config length, config descriptor bytes
 *                                          (configuration 0, wTotalLength bytes, raw USB format)
 *   2 OPEN                              -> result 0 or an error (LIBUSB_ERROR_ACCESS for a port
 *                                          the server denies, like a missing udev rule)
 *   3 CLOSE                             -> result 0 (releases this connection's claims)
 *   4 CLAIM      u8 interface           -> 0, or LIBUSB_ERROR_BUSY if another handle holds it
 *   5 RELEASE    u8 interface           -> 0 or LIBUSB_ERROR_NOT_FOUND
 *   6 SET_ALT    u8 interface, u8 alt   -> 0 or an error
 *   7 CONTROL    u8 bmRequestType, u8 bRequest, u16 wValue, u16 wIndex, u16 wLength,
 *                u32 timeout ms, then wLength data bytes if host-to-device
 *                                       -> result = bytes transferred or an error;
 *                                          payload = the data read if device-to-host
 *   8 RESET                             -> 0, or LIBUSB_ERROR_NOT_FOUND if the device
 *                                          re-enumerated (as libusb_reset_device reports it)
 * Reply body:    i32 result (>= 0 success, < 0 a libusb_error code), then the payload.
 * A device id names one enumeration of one device: after a re-enumeration (normal -> DFU mode,
 * leaving DFU, reset) the same physical device gets a new id and the old id answers
 * LIBUSB_ERROR_NO_DEVICE.
 * ---------------------------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <libusb.h>

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

enum {
    OP_LIST = 1, OP_OPEN = 2, OP_CLOSE = 3, OP_CLAIM = 4, OP_RELEASE = 5,
    OP_SET_ALT = 6, OP_CONTROL = 7, OP_RESET = 8,
};

#define MAX_PORTS 7
/* libusb's Linux backend refuses larger control data stages (MAX_CTRL_BUFFER_LENGTH). */
#define MAX_CONTROL_LENGTH 4096

struct libusb_context {
    int fd;                  /* list connection, -1 until first used */
    pthread_mutex_t lock;
};

/* Set while a device is referenced; cleared just before it is freed. Every entry point taking a
 * libusb_device checks it and aborts on a freed one: real libusb would read freed memory
 * silently, the stand-in makes a use after libusb_unref_device/libusb_free_device_list fail the
 * test that does it. (Not the first field: malloc reuses those of a freed block.) */
#define DEVICE_LIVE 0x4b4c5553u

struct libusb_device {
    libusb_context *ctx;
    atomic_int refcount;
    uint32_t live;
    uint32_t id;
    uint8_t bus, address, port_count, ports[MAX_PORTS];
    struct libusb_device_descriptor descriptor;
    unsigned char *config;   /* raw configuration descriptor, config_length bytes */
    int config_length;
};

struct libusb_device_handle {
    libusb_device *dev;
    int fd;                  /* this handle's own connection */
    pthread_mutex_t lock;
};

static libusb_context *default_context;
static pthread_mutex_t default_context_lock = PTHREAD_MUTEX_INITIALIZER;

static int debug_enabled(void) {
    const char *v = getenv("KEYLINE_STANDIN_DEBUG");
    return v && *v && strcmp(v, "0") != 0;
}

#define DEBUG(...) do { if (debug_enabled()) { fprintf(stderr, "libusb-standin: " __VA_ARGS__); fputc('\n', stderr); } } while (0)

/* ---------- socket framing ---------- */

static int connect_simulator(void) {
    const char *path = getenv("KEYLINE_SIM_SOCKET");
    if (!path || !*path) return -1;
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof addr.sun_path) return -1;
    strcpy(addr.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        DEBUG("cannot connect to %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static int write_all(int fd, const void *buf, size_t len) {
    const unsigned char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int read_all(int fd, void *buf, size_t len) {
    unsigned char *p = buf;
    while (len > 0) {
        ssize_t n = recv(fd, p, len, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void put16(unsigned char *p, uint16_t v) { p[0] = v & 0xff; p[1] = v >> 8; }
static void put32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (v >> (8 * i)) & 0xff; }
static uint16_t get16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t get32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/*
 * One request/reply exchange. `body` is the request after the length prefix. On success returns
 * 0, stores the reply's result in *result and a malloc'd payload (may be NULL) in *payload.
 * Returns -1 when the connection failed (the caller treats that as a vanished device/server).
 */
static int exchange(int fd, const unsigned char *body, uint32_t body_length,
                    int32_t *result, unsigned char **payload, uint32_t *payload_length) {
    unsigned char header[4];
    put32(header, body_length);
    if (write_all(fd, header, 4) != 0 || write_all(fd, body, body_length) != 0) return -1;
    if (read_all(fd, header, 4) != 0) return -1;
    uint32_t length = get32(header);
    if (length < 4 || length > (64u << 20)) return -1;
    unsigned char *reply = malloc(length);
    if (!reply) return -1;
    if (read_all(fd, reply, length) != 0) { free(reply); return -1; }
    *result = (int32_t)get32(reply);
    *payload_length = length - 4;
    if (*payload_length > 0) {
        *payload = malloc(*payload_length);
        if (!*payload) { free(reply); return -1; }
        memcpy(*payload, reply + 4, *payload_length);
    } else {
        *payload = NULL;
    }
    free(reply);
    return 0;
}

/* A request with a small fixed body on a device handle's connection. */
static int handle_request(libusb_device_handle *h, uint8_t op, const unsigned char *args, size_t args_length) {
    unsigned char body[16];
    body[0] = op;
    put32(body + 1, h->dev->id);
    memcpy(body + 5, args, args_length);
    int32_t result;
    unsigned char *payload;
    uint32_t payload_length;
    pthread_mutex_lock(&h->lock);
    int failed = h->fd < 0 || exchange(h->fd, body, (uint32_t)(5 + args_length), &result, &payload, &payload_length) != 0;
    pthread_mutex_unlock(&h->lock);
    if (failed) return LIBUSB_ERROR_NO_DEVICE;
    free(payload);
    return result;
}

/* ---------- context ---------- */

EXPORT int libusb_init(libusb_context **ctx) {
    libusb_context *c = calloc(1, sizeof *c);
    if (!c) return LIBUSB_ERROR_NO_MEM;
    c->fd = -1;
    pthread_mutex_init(&c->lock, NULL);
    if (ctx) {
        *ctx = c;
    } else {
        pthread_mutex_lock(&default_context_lock);
        if (default_context) { free(c); } else { default_context = c; }
        pthread_mutex_unlock(&default_context_lock);
    }
    DEBUG("libusb_init -> %p (socket %s)", (void *)c, getenv("KEYLINE_SIM_SOCKET") ? getenv("KEYLINE_SIM_SOCKET") : "unset");
    return LIBUSB_SUCCESS;
}

EXPORT void libusb_exit(libusb_context *ctx) {
    if (!ctx) {
        pthread_mutex_lock(&default_context_lock);
        ctx = default_context;
        default_context = NULL;
        pthread_mutex_unlock(&default_context_lock);
        if (!ctx) return;
    }
    if (ctx->fd >= 0) close(ctx->fd);
    pthread_mutex_destroy(&ctx->lock);
    free(ctx);
}

static libusb_context *resolve_context(libusb_context *ctx) {
    if (ctx) return ctx;
    pthread_mutex_lock(&default_context_lock);
    libusb_context *c = default_context;
    pthread_mutex_unlock(&default_context_lock);
    return c;
}

EXPORT int libusb_set_option(libusb_context *ctx, enum libusb_option option, ...) {
    (void)ctx;
    /* Log level and device discovery options have nothing to configure here. */
    DEBUG("libusb_set_option(%d)", (int)option);
    return option <= LIBUSB_OPTION_NO_DEVICE_DISCOVERY ? LIBUSB_SUCCESS : LIBUSB_ERROR_INVALID_PARAM;
}

EXPORT const struct libusb_version *libusb_get_version(void) {
    /* 1.0.26 as Debian bookworm reports it; `describe` says what this library really is. */
    static const struct libusb_version version = { 1, 0, 26, 11724, "", "keyline libusb stand-in" };
    return &version;
}

EXPORT const char *libusb_error_name(int code) {
    switch (code) {
    case LIBUSB_SUCCESS: return "LIBUSB_SUCCESS";
    case LIBUSB_ERROR_IO: return "LIBUSB_ERROR_IO";
    case LIBUSB_ERROR_INVALID_PARAM: return "LIBUSB_ERROR_INVALID_PARAM";
    case LIBUSB_ERROR_ACCESS: return "LIBUSB_ERROR_ACCESS";
    case LIBUSB_ERROR_NO_DEVICE: return "LIBUSB_ERROR_NO_DEVICE";
    case LIBUSB_ERROR_NOT_FOUND: return "LIBUSB_ERROR_NOT_FOUND";
    case LIBUSB_ERROR_BUSY: return "LIBUSB_ERROR_BUSY";
    case LIBUSB_ERROR_TIMEOUT: return "LIBUSB_ERROR_TIMEOUT";
    case LIBUSB_ERROR_OVERFLOW: return "LIBUSB_ERROR_OVERFLOW";
    case LIBUSB_ERROR_PIPE: return "LIBUSB_ERROR_PIPE";
    case LIBUSB_ERROR_INTERRUPTED: return "LIBUSB_ERROR_INTERRUPTED";
    case LIBUSB_ERROR_NO_MEM: return "LIBUSB_ERROR_NO_MEM";
    case LIBUSB_ERROR_NOT_SUPPORTED: return "LIBUSB_ERROR_NOT_SUPPORTED";
    case LIBUSB_ERROR_OTHER: return "LIBUSB_ERROR_OTHER";
    default: return "**UNKNOWN**";
    }
}

/* ---------- device list ---------- */

static void require_live(const libusb_device *dev, const char *function) {
    if (dev && dev->live == DEVICE_LIVE) return;
    fprintf(stderr, "libusb stand-in: %s called with a libusb_device that was already freed "
                    "(used after libusb_unref_device or libusb_free_device_list)\n", function);
    abort();
}

EXPORT libusb_device *libusb_ref_device(libusb_device *dev) {
    require_live(dev, __func__);
    atomic_fetch_add(&dev->refcount, 1);
    return dev;
}

EXPORT void libusb_unref_device(libusb_device *dev) {
    if (!dev) return;
    require_live(dev, __func__);
    if (atomic_fetch_sub(&dev->refcount, 1) == 1) {
        dev->live = 0;
        free(dev->config);
        free(dev);
    }
}

/* Parses one LIST entry at p (bounded by end); returns the bytes consumed or 0 if malformed. */
static size_t parse_list_entry(libusb_context *ctx, const unsigned char *p, const unsigned char *end, libusb_device **out) {
    const size_t fixed = 4 + 1 + 1 + 1 + MAX_PORTS + 18 + 2;
    if ((size_t)(end - p) < fixed) return 0;
    uint16_t config_length = get16(p + fixed - 2);
    if ((size_t)(end - p) < fixed + config_length) return 0;
    libusb_device *d = calloc(1, sizeof *d);
    if (!d) return 0;
    d->ctx = ctx;
    atomic_init(&d->refcount, 1);
    d->live = DEVICE_LIVE;
    d->id = get32(p);
    d->bus = p[4];
    d->address = p[5];
    d->port_count = p[6] > MAX_PORTS ? MAX_PORTS : p[6];
    memcpy(d->ports, p + 7, MAX_PORTS);
    const unsigned char *dd = p + 7 + MAX_PORTS;
    d->descriptor.bLength = dd[0];
    d->descriptor.bDescriptorType = dd[1];
    d->descriptor.bcdUSB = get16(dd + 2);
    d->descriptor.bDeviceClass = dd[4];
    d->descriptor.bDeviceSubClass = dd[5];
    d->descriptor.bDeviceProtocol = dd[6];
    d->descriptor.bMaxPacketSize0 = dd[7];
    d->descriptor.idVendor = get16(dd + 8);
    d->descriptor.idProduct = get16(dd + 10);
    d->descriptor.bcdDevice = get16(dd + 12);
    d->descriptor.iManufacturer = dd[14];
    d->descriptor.iProduct = dd[15];
    d->descriptor.iSerialNumber = dd[16];
    d->descriptor.bNumConfigurations = dd[17];
    d->config_length = config_length;
    if (config_length > 0) {
        d->config = malloc(config_length);
        if (!d->config) { free(d); return 0; }
        memcpy(d->config, p + fixed, config_length);
    }
    *out = d;
    return fixed + config_length;
}

EXPORT ssize_t libusb_get_device_list(libusb_context *ctx, libusb_device ***list) {
    ctx = resolve_context(ctx);
    if (!ctx || !list) return LIBUSB_ERROR_INVALID_PARAM;
    if (!getenv("KEYLINE_SIM_SOCKET")) {
        /* No simulator named: a machine with no USB devices. */
        *list = calloc(1, sizeof(libusb_device *));
        return *list ? 0 : LIBUSB_ERROR_NO_MEM;
    }
    unsigned char body[5] = { OP_LIST, 0, 0, 0, 0 };
    int32_t result = 0;
    unsigned char *payload = NULL;
    uint32_t payload_length = 0;
    pthread_mutex_lock(&ctx->lock);
    int failed = 1;
    for (int attempt = 0; attempt < 2 && failed; attempt++) {
        if (ctx->fd < 0) ctx->fd = connect_simulator();
        if (ctx->fd < 0) break;
        failed = exchange(ctx->fd, body, sizeof body, &result, &payload, &payload_length) != 0;
        if (failed) { close(ctx->fd); ctx->fd = -1; }   /* the server restarted: reconnect once */
    }
    pthread_mutex_unlock(&ctx->lock);
    if (failed) {
        DEBUG("libusb_get_device_list: simulator unreachable");
        return LIBUSB_ERROR_IO;
    }
    if (result < 0) { free(payload); return result; }
    libusb_device **devices = calloc((size_t)result + 1, sizeof *devices);
    if (!devices) { free(payload); return LIBUSB_ERROR_NO_MEM; }
    const unsigned char *p = payload, *end = payload + payload_length;
    int count = 0;
    for (int i = 0; i < result; i++) {
        size_t used = parse_list_entry(ctx, p, end, &devices[count]);
        if (used == 0) break;
        p += used;
        count++;
    }
    free(payload);
    *list = devices;
    DEBUG("libusb_get_device_list -> %d", count);
    return count;
}

EXPORT void libusb_free_device_list(libusb_device **list, int unref_devices) {
    if (!list) return;
    if (unref_devices)
        for (libusb_device **d = list; *d; d++) libusb_unref_device(*d);
    free(list);
}

EXPORT int libusb_get_device_descriptor(libusb_device *dev, struct libusb_device_descriptor *desc) {
    require_live(dev, __func__);
    *desc = dev->descriptor;
    return LIBUSB_SUCCESS;
}

EXPORT uint8_t libusb_get_bus_number(libusb_device *dev) { require_live(dev, __func__); return dev->bus; }
EXPORT uint8_t libusb_get_device_address(libusb_device *dev) { require_live(dev, __func__); return dev->address; }
EXPORT uint8_t libusb_get_port_number(libusb_device *dev) {
    require_live(dev, __func__);
    return dev->port_count ? dev->ports[dev->port_count - 1] : 0;
}

EXPORT int libusb_get_port_numbers(libusb_device *dev, uint8_t *port_numbers, int port_numbers_len) {
    require_live(dev, __func__);
    if (port_numbers_len <= 0) return LIBUSB_ERROR_INVALID_PARAM;
    if (dev->port_count > port_numbers_len) return LIBUSB_ERROR_OVERFLOW;
    memcpy(port_numbers, dev->ports, dev->port_count);
    return dev->port_count;
}

/* ---------- configuration descriptor parsing (libusb descriptor.c semantics, §4.2) ---------- */

static void free_interface_descriptor(struct libusb_interface_descriptor *alt) {
    for (int e = 0; e < alt->bNumEndpoints && alt->endpoint; e++) free((void *)alt->endpoint[e].extra);
    free((void *)alt->endpoint);
    free((void *)alt->extra);
}

EXPORT void libusb_free_config_descriptor(struct libusb_config_descriptor *config) {
    if (!config) return;
    for (int i = 0; i < config->bNumInterfaces && config->interface; i++) {
        const struct libusb_interface *iface = &config->interface[i];
        for (int a = 0; a < iface->num_altsetting; a++)
            free_interface_descriptor((struct libusb_interface_descriptor *)&iface->altsetting[a]);
        free((void *)iface->altsetting);
    }
    free((void *)config->interface);
    free((void *)config->extra);
    free(config);
}

/* Appends raw bytes to a malloc'd `extra` buffer. */
static int append_extra(const unsigned char **extra, int *extra_length, const unsigned char *bytes, int length) {
    unsigned char *grown = realloc((void *)*extra, (size_t)(*extra_length + length));
    if (!grown) return -1;
    memcpy(grown + *extra_length, bytes, (size_t)length);
    *extra = grown;
    *extra_length += length;
    return 0;
}

static int parse_config(const unsigned char *raw, int length, struct libusb_config_descriptor **out) {
    if (length < LIBUSB_DT_CONFIG_SIZE || raw[1] != LIBUSB_DT_CONFIG) return LIBUSB_ERROR_IO;
    struct libusb_config_descriptor *c = calloc(1, sizeof *c);
    if (!c) return LIBUSB_ERROR_NO_MEM;
    c->bLength = raw[0];
    c->bDescriptorType = raw[1];
    c->wTotalLength = get16(raw + 2);
    c->bNumInterfaces = raw[4];
    c->bConfigurationValue = raw[5];
    c->iConfiguration = raw[6];
    c->bmAttributes = raw[7];
    c->MaxPower = raw[8];
    struct libusb_interface *interfaces = calloc(c->bNumInterfaces ? c->bNumInterfaces : 1, sizeof *interfaces);
    if (!interfaces) { free(c); return LIBUSB_ERROR_NO_MEM; }
    c->interface = interfaces;

    struct libusb_interface_descriptor *current = NULL;    /* where class descriptors go */
    struct libusb_endpoint_descriptor *current_endpoint = NULL;
    int offset = raw[0];
    int status = LIBUSB_SUCCESS;
    while (offset + 2 <= length && status == LIBUSB_SUCCESS) {
        int dlen = raw[offset], dtype = raw[offset + 1];
        if (dlen < 2 || offset + dlen > length) { status = LIBUSB_ERROR_IO; break; }
        const unsigned char *d = raw + offset;
        if (dtype == LIBUSB_DT_INTERFACE && dlen >= LIBUSB_DT_INTERFACE_SIZE) {
            int number = d[2];
            if (number >= c->bNumInterfaces) { status = LIBUSB_ERROR_IO; break; }
            struct libusb_interface *iface = &interfaces[number];
            struct libusb_interface_descriptor *alts =
                realloc((void *)iface->altsetting, (size_t)(iface->num_altsetting + 1) * sizeof *alts);
            if (!alts) { status = LIBUSB_ERROR_NO_MEM; break; }
            iface->altsetting = alts;
            current = &alts[iface->num_altsetting++];
            memset(current, 0, sizeof *current);
            current->bLength = d[0];
            current->bDescriptorType = d[1];
            current->bInterfaceNumber = d[2];
            current->bAlternateSetting = d[3];
            current->bNumEndpoints = 0;               /* counted as endpoints arrive */
            current->bInterfaceClass = d[5];
            current->bInterfaceSubClass = d[6];
            current->bInterfaceProtocol = d[7];
            current->iInterface = d[8];
            current_endpoint = NULL;
        } else if (dtype == LIBUSB_DT_ENDPOINT && current && dlen >= LIBUSB_DT_ENDPOINT_SIZE) {
            struct libusb_endpoint_descriptor *eps =
                realloc((void *)current->endpoint, (size_t)(current->bNumEndpoints + 1) * sizeof *eps);
            if (!eps) { status = LIBUSB_ERROR_NO_MEM; break; }
            current->endpoint = eps;
            current_endpoint = &eps[current->bNumEndpoints++];
            memset(current_endpoint, 0, sizeof *current_endpoint);
            current_endpoint->bLength = d[0];
            current_endpoint->bDescriptorType = d[1];
            current_endpoint->bEndpointAddress = d[2];
            current_endpoint->bmAttributes = d[3];
            current_endpoint->wMaxPacketSize = get16(d + 4);
            current_endpoint->bInterval = d[6];
            if (dlen >= LIBUSB_DT_ENDPOINT_AUDIO_SIZE) {
                current_endpoint->bRefresh = d[7];
                current_endpoint->bSynchAddress = d[8];
            }
        } else if (dtype == LIBUSB_DT_DEVICE || dtype == LIBUSB_DT_CONFIG) {
            status = LIBUSB_ERROR_IO;
        } else if (current_endpoint) {
            if (append_extra(&current_endpoint->extra, &current_endpoint->extra_length, d, dlen) != 0) status = LIBUSB_ERROR_NO_MEM;
        } else if (current) {
            if (append_extra(&current->extra, &current->extra_length, d, dlen) != 0) status = LIBUSB_ERROR_NO_MEM;
        } else {
            if (append_extra(&c->extra, &c->extra_length, d, dlen) != 0) status = LIBUSB_ERROR_NO_MEM;
        }
        offset += dlen;
    }
    if (status != LIBUSB_SUCCESS) { libusb_free_config_descriptor(c); return status; }
    *out = c;
    return LIBUSB_SUCCESS;
}

EXPORT int libusb_get_config_descriptor(libusb_device *dev, uint8_t config_index, struct libusb_config_descriptor **config) {
    require_live(dev, __func__);
    if (config_index >= dev->descriptor.bNumConfigurations || config_index > 0 || dev->config_length == 0)
        return LIBUSB_ERROR_NOT_FOUND;
    return parse_config(dev->config, dev->config_length, config);
}

EXPORT int libusb_get_active_config_descriptor(libusb_device *dev, struct libusb_config_descriptor **config) {
    return libusb_get_config_descriptor(dev, 0, config);
}

/* ---------- device handles ---------- */

EXPORT int libusb_open(libusb_device *dev, libusb_device_handle **dev_handle) {
    require_live(dev, __func__);
    libusb_device_handle *h = calloc(1, sizeof *h);
    if (!h) return LIBUSB_ERROR_NO_MEM;
    h->dev = dev;
    h->fd = connect_simulator();
    pthread_mutex_init(&h->lock, NULL);
    if (h->fd < 0) { pthread_mutex_destroy(&h->lock); free(h); return LIBUSB_ERROR_NO_DEVICE; }
    int result = handle_request(h, OP_OPEN, NULL, 0);
    DEBUG("libusb_open(id %u) -> %d", dev->id, result);
    if (result < 0) {
        close(h->fd);
        pthread_mutex_destroy(&h->lock);
        free(h);
        return result;
    }
    libusb_ref_device(dev);
    *dev_handle = h;
    return LIBUSB_SUCCESS;
}

EXPORT void libusb_close(libusb_device_handle *h) {
    if (!h) return;
    handle_request(h, OP_CLOSE, NULL, 0);
    DEBUG("libusb_close(id %u)", h->dev->id);
    if (h->fd >= 0) close(h->fd);
    pthread_mutex_destroy(&h->lock);
    libusb_unref_device(h->dev);
    free(h);
}

EXPORT libusb_device *libusb_get_device(libusb_device_handle *h) { return h->dev; }

EXPORT int libusb_claim_interface(libusb_device_handle *h, int interface_number) {
    if (interface_number < 0 || interface_number > 255) return LIBUSB_ERROR_INVALID_PARAM;
    unsigned char args[1] = { (unsigned char)interface_number };
    int result = handle_request(h, OP_CLAIM, args, 1);
    DEBUG("libusb_claim_interface(id %u, %d) -> %d", h->dev->id, interface_number, result);
    return result;
}

EXPORT int libusb_release_interface(libusb_device_handle *h, int interface_number) {
    if (interface_number < 0 || interface_number > 255) return LIBUSB_ERROR_INVALID_PARAM;
    unsigned char args[1] = { (unsigned char)interface_number };
    int result = handle_request(h, OP_RELEASE, args, 1);
    DEBUG("libusb_release_interface(id %u, %d) -> %d", h->dev->id, interface_number, result);
    return result;
}

EXPORT int libusb_set_interface_alt_setting(libusb_device_handle *h, int interface_number, int alternate_setting) {
    if (interface_number < 0 || interface_number > 255 || alternate_setting < 0 || alternate_setting > 255)
        return LIBUSB_ERROR_INVALID_PARAM;
    unsigned char args[2] = { (unsigned char)interface_number, (unsigned char)alternate_setting };
    int result = handle_request(h, OP_SET_ALT, args, 2);
    DEBUG("libusb_set_interface_alt_setting(id %u, %d, %d) -> %d", h->dev->id, interface_number, alternate_setting, result);
    return result;
}

EXPORT int libusb_reset_device(libusb_device_handle *h) {
    int result = handle_request(h, OP_RESET, NULL, 0);
    DEBUG("libusb_reset_device(id %u) -> %d", h->dev->id, result);
    return result;
}

/* There is no kernel driver to detach from a simulated device. */
EXPORT int libusb_set_auto_detach_kernel_driver(libusb_device_handle *h, int enable) { (void)h; (void)enable; return LIBUSB_SUCCESS; }
EXPORT int libusb_kernel_driver_active(libusb_device_handle *h, int interface_number) { (void)h; (void)interface_number; return 0; }
EXPORT int libusb_detach_kernel_driver(libusb_device_handle *h, int interface_number) { (void)h; (void)interface_number; return LIBUSB_ERROR_NOT_FOUND; }

EXPORT int libusb_control_transfer(libusb_device_handle *h, uint8_t request_type, uint8_t bRequest,
                                   uint16_t wValue, uint16_t wIndex, unsigned char *data, uint16_t wLength,
                                   unsigned int timeout) {
    if (wLength > MAX_CONTROL_LENGTH) return LIBUSB_ERROR_INVALID_PARAM;
    int device_to_host = (request_type & LIBUSB_ENDPOINT_IN) != 0;
    if (wLength > 0 && !data) return LIBUSB_ERROR_INVALID_PARAM;
    uint32_t body_length = 1 + 4 + 12 + (device_to_host ? 0 : wLength);
    unsigned char *body = malloc(body_length);
    if (!body) return LIBUSB_ERROR_NO_MEM;
    body[0] = OP_CONTROL;
    put32(body + 1, h->dev->id);
    body[5] = request_type;
    body[6] = bRequest;
    put16(body + 7, wValue);
    put16(body + 9, wIndex);
    put16(body + 11, wLength);
    put32(body + 13, timeout);
    if (!device_to_host && wLength > 0) memcpy(body + 17, data, wLength);

    int32_t result;
    unsigned char *payload;
    uint32_t payload_length;
    pthread_mutex_lock(&h->lock);
    int failed = h->fd < 0 || exchange(h->fd, body, body_length, &result, &payload, &payload_length) != 0;
    pthread_mutex_unlock(&h->lock);
    free(body);
    if (failed) return LIBUSB_ERROR_NO_DEVICE;
    if (result >= 0 && device_to_host) {
        uint32_t n = payload_length < wLength ? payload_length : wLength;
        if (n > 0) memcpy(data, payload, n);
        result = (int32_t)n;
    }
    free(payload);
    DEBUG("libusb_control_transfer(id %u, 0x%02x, %u, 0x%04x, 0x%04x, %u) -> %d",
          h->dev->id, request_type, bRequest, wValue, wIndex, wLength, result);
    return result;
}

/*
 * Not inline in libusb.h: reads the first LANGID, then the string in it, and converts UTF-16LE to
 * ASCII with '?' for anything else (libusb core.c behaviour).
 */
EXPORT int libusb_get_string_descriptor_ascii(libusb_device_handle *h, uint8_t desc_index, unsigned char *data, int length) {
    if (desc_index == 0) return LIBUSB_ERROR_INVALID_PARAM;
    unsigned char buffer[255];
    int r = libusb_control_transfer(h, LIBUSB_ENDPOINT_IN, LIBUSB_REQUEST_GET_DESCRIPTOR,
                                    (uint16_t)(LIBUSB_DT_STRING << 8), 0, buffer, sizeof buffer, 1000);
    if (r < 0) return r;
    if (r < 4) return LIBUSB_ERROR_IO;
    uint16_t langid = get16(buffer + 2);
    r = libusb_control_transfer(h, LIBUSB_ENDPOINT_IN, LIBUSB_REQUEST_GET_DESCRIPTOR,
                                (uint16_t)((LIBUSB_DT_STRING << 8) | desc_index), langid, buffer, sizeof buffer, 1000);
    if (r < 0) return r;
    if (r < 2 || buffer[1] != LIBUSB_DT_STRING) return LIBUSB_ERROR_IO;
    if (buffer[0] > r) return LIBUSB_ERROR_IO;
    int out = 0;
    for (int i = 2; i + 1 < buffer[0] && out < length - 1; i += 2)
        data[out++] = (buffer[i + 1] || (buffer[i] & 0x80)) ? '?' : buffer[i];
    if (length > 0) data[out] = 0;
    return out;
}
