using System.IO.MemoryMappedFiles;

namespace Hub;

/// <summary>A read-only memory-mapped file exposing a raw pointer, so tensors are zero-copy views.</summary>
/// <remarks>The pointer stays valid until <see cref="Dispose"/>; views must not outlive the owner.</remarks>
public sealed unsafe class MappedFile : IDisposable
{
    private readonly MemoryMappedFile? _mmf;
    private readonly MemoryMappedViewAccessor? _view;
    private byte* _ptr;

    /// <summary>The mapped path.</summary>
    public string Path { get; }
    /// <summary>The file length in bytes.</summary>
    public long Length { get; }

    /// <summary>Maps <paramref name="path"/> read-only.</summary>
    public MappedFile(string path)
    {
        Path = path;
        if (!File.Exists(path)) throw new ModelFileNotFoundException(path, "the file does not exist");
        Length = LengthOf(path);
        if (Length == 0) return; // empty files cannot be mapped; Pointer stays null
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete);
        _mmf = MemoryMappedFile.CreateFromFile(fs, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
        _view = _mmf.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        byte* p = null;
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        _ptr = p + _view.PointerOffset;
    }

    /// <summary>
    /// The length of the file's content, following symbolic links (hub cache snapshots are links to blobs, and
    /// <c>FileInfo.Length</c> of a link is the length of the link itself).
    /// </summary>
    public static long LengthOf(string path)
    {
        var fi = new FileInfo(path);
        if (fi.LinkTarget is not null && fi.ResolveLinkTarget(returnFinalTarget: true) is FileInfo target) fi = target;
        return fi.Length;
    }

    /// <summary>Base address of the mapping (null for an empty file).</summary>
    public byte* Pointer => _ptr;

    /// <summary>A span over [offset, offset+length); throws when out of range.</summary>
    public ReadOnlySpan<byte> Span(long offset, long length)
    {
        if (offset < 0 || length < 0 || offset + length > Length)
            throw new ArgumentOutOfRangeException(nameof(offset), $"range [{offset}, {offset + length}) outside {Path} ({Length} bytes)");
        if (length > int.MaxValue) throw new ArgumentOutOfRangeException(nameof(length), "span longer than 2 GiB; use Pointer");
        return new ReadOnlySpan<byte>(_ptr + offset, (int)length);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_view != null && _ptr != null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _ptr = null;
        }
        _view?.Dispose();
        _mmf?.Dispose();
    }
}
