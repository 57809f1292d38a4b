namespace Hub;

/// <summary>
/// A write-only stream over a new file that reaches the file only in whole chunks of <see cref="ChunkBytes"/> at
/// offsets that are multiples of it (the last one excepted), for weight files that are memory-mapped afterwards.
/// </summary>
/// <remarks>
/// Linux page caches with large folios (ext4 from 6.16, xfs) size a written folio by the write that creates it and
/// align it to its own size, so aligned multi-megabyte writes leave the file cached in 2 MiB folios, which a later
/// mapping maps with one page-table entry each (see <see cref="MappedFile"/>). FileStream's own buffer writes a large
/// span straight through at whatever offset it starts, which splits most of a model file into small folios.
/// </remarks>
public sealed class ChunkedFileWriter : Stream
{
    /// <summary>Bytes per write to the file: two 2 MiB huge pages.</summary>
    public const int ChunkBytes = 4 << 20;

    private readonly FileStream _file;
    private readonly byte[] _buffer = new byte[ChunkBytes];
    private int _used;
    private long _position;
    private bool _faulted;   // a write to the file failed: Dispose then leaves the tail, so its error cannot replace the first

    /// <summary>Creates (or truncates) <paramref name="path"/> for writing.</summary>
    public ChunkedFileWriter(string path) =>
        _file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, bufferSize: 0);

    /// <inheritdoc/>
    public override void Write(ReadOnlySpan<byte> source)
    {
        long end = _position + source.Length;
        try { WriteChunks(source); }
        catch { _faulted = true; throw; }
        _position = end;
    }

    private void WriteChunks(ReadOnlySpan<byte> source)
    {
        if (_used > 0)
        {
            int take = Math.Min(source.Length, ChunkBytes - _used);
            source[..take].CopyTo(_buffer.AsSpan(_used));
            _used += take;
            source = source[take..];
            if (_used < ChunkBytes) return;
            _file.Write(_buffer);
            _used = 0;
        }
        // the file position is a multiple of ChunkBytes here: whole chunks go straight from the caller's memory
        int whole = source.Length / ChunkBytes * ChunkBytes;
        if (whole > 0) _file.Write(source[..whole]);
        source[whole..].CopyTo(_buffer);
        _used = source.Length - whole;
    }

    /// <inheritdoc/>
    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    /// <inheritdoc/>
    public override void WriteByte(byte value) => Write([value]);

    /// <summary>
    /// Writes the buffered tail (a partial chunk) and, with <paramref name="flushToDisk"/>, waits until the OS has stored
    /// the file. Call it once, at the end: writes after it no longer start on chunk boundaries.
    /// </summary>
    public void Flush(bool flushToDisk)
    {
        WriteTail();
        _file.Flush(flushToDisk);
    }

    /// <summary>
    /// Does nothing: a partial chunk written early would shift every later chunk off its boundary (BinaryWriter flushes
    /// the stream it leaves open when it is disposed). The tail reaches the file at <see cref="Flush(bool)"/> or Dispose.
    /// </summary>
    public override void Flush() { }

    /// <summary>
    /// Drops [<paramref name="offset"/>, <paramref name="offset"/> + <paramref name="length"/>) of the file from the page
    /// cache (Linux posix_fadvise DONTNEED; no-op elsewhere), after <see cref="Flush(bool)"/> with flushToDisk: for a
    /// tensor read a few rows at a time (an embedding table), whose next reads should fault small folios around their
    /// rows rather than map the 2 MiB folios the chunked write left (touching a large folio maps all of it).
    /// </summary>
    public void DropFromPageCache(long offset, long length)
    {
        const int PosixFadvDontNeed = 4;
        // off_t is 64-bit in a 64-bit process only (a 32-bit one would need posix_fadvise64)
        if (length > 0 && OperatingSystem.IsLinux() && Environment.Is64BitProcess) _ = PosixFadvise(_file.SafeFileHandle, offset, length, PosixFadvDontNeed);
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "posix_fadvise")]
    private static extern int PosixFadvise(Microsoft.Win32.SafeHandles.SafeFileHandle fd, long offset, long length, int advice);

    private void WriteTail()
    {
        if (_used == 0) return;
        try { _file.Write(_buffer, 0, _used); }
        catch { _faulted = true; throw; }
        _used = 0;
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            try { if (!_faulted) WriteTail(); }
            finally { _file.Dispose(); }
        }
        base.Dispose(disposing);
    }

    /// <inheritdoc/>
    public override bool CanRead => false;
    /// <inheritdoc/>
    public override bool CanSeek => false;
    /// <inheritdoc/>
    public override bool CanWrite => true;
    /// <inheritdoc/>
    public override long Length => _position;
    /// <inheritdoc/>
    public override long Position { get => _position; set => throw new NotSupportedException("ChunkedFileWriter writes sequentially"); }
    /// <inheritdoc/>
    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException("ChunkedFileWriter is write-only");
    /// <inheritdoc/>
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException("ChunkedFileWriter writes sequentially");
    /// <inheritdoc/>
    public override void SetLength(long value) => throw new NotSupportedException("ChunkedFileWriter writes sequentially");
}
