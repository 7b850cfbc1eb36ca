import COpenSSL
import CTLSGateOpenSSL
import NIOCore

/// A BIO that lets OpenSSL read ciphertext straight out of the `ByteBuffer`s the socket
/// produced and write ciphertext straight into one `ByteBuffer` the socket will send:
/// no memory-BIO staging copy on either side.
///
/// Inbound, OpenSSL reads first from `stash` (the tail of an earlier read that ended in
/// the middle of a record), then from `current` (the buffer being processed). Only the
/// unconsumed tail of `current` is ever copied, into `stash`, so the socket's receive
/// buffer is released and reused.
///
/// Memory: an idle connection holds no buffer here. `stash` lets its storage go once it is
/// drained; `outbound` hands its storage to the socket with the ciphertext (`takeOutbound`)
/// and the next write starts a buffer sized for what is about to be encrypted
/// (`reserveOutbound`), so bulk transfers do not regrow it record by record.
final class ByteBufferBIO {
    private(set) var bio: OpaquePointer?
    private var stash: ByteBuffer
    private var current: ByteBuffer?
    /// Ciphertext OpenSSL produced and that still has to go to the socket.
    var outbound: ByteBuffer
    /// The peer closed its side of TCP: reads report EOF instead of "retry".
    var peerClosed = false

    init(allocator: ByteBufferAllocator) throws(TLSError) {
        stash = allocator.buffer(capacity: 0)
        outbound = allocator.buffer(capacity: 0)
        guard let bio = BIO_new(ByteBufferBIO.method) else {
            throw OpenSSLErrorQueue.error(.configuration, "BIO_new failed")
        }
        self.bio = bio
        // Unretained: the owning TLSConnection keeps both this object and the SSL (which
        // frees the BIO) alive, and frees the SSL first.
        BIO_set_data(bio, Unmanaged.passUnretained(self).toOpaque())
        BIO_set_init(bio, 1)
    }

    /// Runs `body` with `buffer` as the bytes OpenSSL may read, then keeps what it left.
    func withInbound<T>(_ buffer: inout ByteBuffer, _ body: () -> T) -> T {
        current = buffer
        buffer = ByteBuffer()  // let the caller's reference go
        let result = body()
        if var rest = current, rest.readableBytes > 0 {
            stash.writeBuffer(&rest)
        } else if stash.readableBytes == 0 && stash.capacity > 0 {
            stash = ByteBuffer()  // drained: an idle connection keeps no buffer (shared empty storage)
        }
        current = nil
        return result
    }

    /// Drops the ciphertext kept from earlier reads (after close_notify nothing more is read).
    func discardInbound() {
        if stash.readableBytes > 0 || stash.capacity > 0 { stash = ByteBuffer() }
        current = nil
    }

    /// Ciphertext kept for OpenSSL to read later.
    var bufferedInboundBytes: Int { stash.readableBytes + (current?.readableBytes ?? 0) }

    var hasBufferedInbound: Bool { stash.readableBytes > 0 || (current?.readableBytes ?? 0) > 0 }

    /// The ciphertext produced so far; `outbound` is left empty and without storage, which
    /// goes with the returned buffer to the socket and is freed once written.
    func takeOutbound() -> ByteBuffer? {
        guard outbound.readableBytes > 0 else { return nil }
        let data = outbound
        outbound = ByteBuffer()  // the shared empty storage: no allocation
        return data
    }

    /// Makes room for `bytes` more ciphertext in one allocation (before SSL_write of a
    /// large plaintext, instead of growing the buffer record by record).
    func reserveOutbound(_ bytes: Int) {
        outbound.reserveCapacity(minimumWritableBytes: bytes)
    }

    /// Drops buffered bytes; used when the connection is torn down.
    func releaseBuffers(allocator: ByteBufferAllocator) {
        stash = allocator.buffer(capacity: 0)
        outbound = allocator.buffer(capacity: 0)
        current = nil
    }

    fileprivate func read(into destination: UnsafeMutableRawBufferPointer) -> Int {
        var copied = 0
        if stash.readableBytes > 0 {
            copied = copy(from: &stash, into: destination)
            if stash.readableBytes == 0 { stash.clear() }
        }
        if copied < destination.count, current != nil {
            copied += copy(from: &current!, into: UnsafeMutableRawBufferPointer(rebasing: destination[copied...]))
        }
        return copied
    }

    private func copy(from source: inout ByteBuffer, into destination: UnsafeMutableRawBufferPointer) -> Int {
        let n = min(source.readableBytes, destination.count)
        guard n > 0 else { return 0 }
        source.withUnsafeReadableBytes { src in
            destination.baseAddress!.copyMemory(from: src.baseAddress!, byteCount: n)
        }
        source.moveReaderIndex(forwardBy: n)
        return n
    }

    fileprivate func write(_ source: UnsafeRawBufferPointer) {
        outbound.writeBytes(source)
    }

    /// The BIO_METHOD, created once per process.
    nonisolated(unsafe) static let method: OpaquePointer = {
        let type = BIO_get_new_index() | BIO_TYPE_SOURCE_SINK
        guard let method = BIO_meth_new(type, "tlsgate ByteBuffer") else {
            fatalError("BIO_meth_new failed: out of memory")
        }
        BIO_meth_set_write_ex(method, byteBufferBIOWrite)
        BIO_meth_set_read_ex(method, byteBufferBIORead)
        BIO_meth_set_ctrl(method, byteBufferBIOCtrl)
        BIO_meth_set_create(method, { bio in
            BIO_set_init(bio, 0)
            return 1
        })
        BIO_meth_set_destroy(method, { bio in
            BIO_set_data(bio, nil)
            return 1
        })
        return method
    }()
}

private func byteBufferBIO(_ bio: OpaquePointer?) -> ByteBufferBIO? {
    guard let bio, let data = BIO_get_data(bio) else { return nil }
    return Unmanaged<ByteBufferBIO>.fromOpaque(data).takeUnretainedValue()
}

private func byteBufferBIOWrite(
    _ bio: OpaquePointer?, _ data: UnsafePointer<CChar>?, _ length: Int, _ written: UnsafeMutablePointer<Int>?
) -> Int32 {
    tg_ssl_bio_clear_retry_flags(bio)
    guard let owner = byteBufferBIO(bio), let data else { return 0 }
    owner.write(UnsafeRawBufferPointer(start: data, count: length))
    written?.pointee = length
    return 1
}

private func byteBufferBIORead(
    _ bio: OpaquePointer?, _ data: UnsafeMutablePointer<CChar>?, _ length: Int, _ readBytes: UnsafeMutablePointer<Int>?
) -> Int32 {
    tg_ssl_bio_clear_retry_flags(bio)
    guard let owner = byteBufferBIO(bio), let data else { return 0 }
    let n = owner.read(into: UnsafeMutableRawBufferPointer(start: data, count: length))
    readBytes?.pointee = n
    if n > 0 { return 1 }
    if !owner.peerClosed { tg_ssl_bio_set_retry_read(bio) }
    return 0
}

private func byteBufferBIOCtrl(_ bio: OpaquePointer?, _ cmd: Int32, _ larg: Int, _ parg: UnsafeMutableRawPointer?) -> Int {
    switch cmd {
    case tg_ssl_bio_ctrl_flush(): return 1
    case tg_ssl_bio_ctrl_get_close(): return Int(BIO_get_shutdown(bio))
    case tg_ssl_bio_ctrl_set_close():
        BIO_set_shutdown(bio, Int32(larg))
        return 1
    case tg_ssl_bio_ctrl_pending():
        guard let owner = byteBufferBIO(bio) else { return 0 }
        return owner.hasBufferedInbound ? 1 : 0
    case tg_ssl_bio_ctrl_wpending(): return 0
    case tg_ssl_bio_ctrl_eof():
        guard let owner = byteBufferBIO(bio) else { return 1 }
        return owner.peerClosed && !owner.hasBufferedInbound ? 1 : 0
    default: return 0
    }
}
