using System.Text;
using System.Text.Json;
using Hub.Weights;

namespace Hub.Converters;

/// <summary>One tensor to write: element type, shape and its little-endian row-major bytes.</summary>
/// <param name="DType">Element type.</param>
/// <param name="Shape">Shape.</param>
/// <param name="Data">Bytes; length must be element count × dtype size.</param>
public sealed record SafetensorsTensor(DType DType, Shape Shape, ReadOnlyMemory<byte> Data);

/// <summary>
/// Writes <c>.safetensors</c> files as the reference implementation does (tensors sorted by name, header padded with
/// spaces to a multiple of 8 so the data area is aligned), to a temporary name renamed at the end, so a crash never
/// leaves a half-written file where a loader would pick it up.
/// </summary>
public static class SafetensorsWriter
{
    /// <summary>Writes <paramref name="tensors"/> (and optional <c>__metadata__</c>) to <paramref name="path"/>.</summary>
    public static void Write(string path, IReadOnlyDictionary<string, SafetensorsTensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        foreach (var (name, t) in tensors)
        {
            long expected = t.Shape.ElementCount * t.DType.SizeOf();
            if (t.Data.Length != expected)
                throw new ArgumentException($"tensor '{name}': {t.Data.Length} bytes given, {t.DType} {t.Shape} needs {expected}", nameof(tensors));
        }
        WriteStreaming(path, tensors.Select(kv => (kv.Key, kv.Value.DType, kv.Value.Shape)), metadata, (name, stream) => stream.Write(tensors[name].Data.Span));
    }

    /// <summary>
    /// Copies every tensor of <paramref name="source"/> (e.g. a torch <c>.bin</c>) into a safetensors file, streaming one
    /// view at a time so memory stays flat; tensors sharing storage in the source are written as separate copies, as
    /// safetensors requires.
    /// </summary>
    public static unsafe void WriteFrom(string path, ITensorSource source, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(source);
        var infos = source.Names.Select(n => source.TryGetInfo(n, out var i) ? i
            : throw new CheckpointFormatException(source.Location, n, "listed but has no metadata")).ToList();
        WriteStreaming(path, infos.Select(i => (i.Name, i.DType, i.Shape)), metadata ?? new Dictionary<string, string> { ["format"] = "pt" }, (name, stream) =>
        {
            var v = source.Open(name);
            using var ums = new UnmanagedMemoryStream((byte*)v.Pointer, v.ByteLength);
            ums.CopyTo(stream, 1 << 20);
        });
    }

    /// <summary>
    /// Writes a safetensors file whose tensor bytes are produced by <paramref name="writeData"/>(name, stream), called once
    /// per tensor in name order, so tensors larger than memory (or generated on the fly) can be written. Each call must
    /// write exactly the tensor's byte size; the file appears under <paramref name="path"/> only when complete.
    /// </summary>
    public static void WriteStreaming(string path, IEnumerable<(string Name, DType DType, Shape Shape)> tensors,
        IReadOnlyDictionary<string, string>? metadata, Action<string, Stream> writeData)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentNullException.ThrowIfNull(writeData);
        var list = tensors.OrderBy(t => t.Name, StringComparer.Ordinal).ToList();
        for (int i = 1; i < list.Count; i++)
            if (list[i].Name == list[i - 1].Name)
                throw new ArgumentException($"tensor '{list[i].Name}' is listed twice; a safetensors header holds each name once", nameof(tensors));
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                w.WriteStartObject("__metadata__");
                foreach (var kv in metadata.OrderBy(k => k.Key, StringComparer.Ordinal)) w.WriteString(kv.Key, kv.Value);
                w.WriteEndObject();
            }
            long offset = 0;
            foreach (var (name, dtype, shape) in list)
            {
                if (name == "__metadata__") throw new ArgumentException("'__metadata__' is reserved and cannot name a tensor", nameof(tensors));
                long bytes = shape.ElementCount * dtype.SizeOf();
                w.WriteStartObject(name);
                w.WriteString("dtype", dtype.ToSafetensorsName());
                w.WriteStartArray("shape");
                foreach (var d in shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset + bytes);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += bytes;
            }
            w.WriteEndObject();
        }
        var header = ms.ToArray();
        int padded = (header.Length + 7) / 8 * 8;

        var dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        Directory.CreateDirectory(dir);
        var tmp = Path.Combine(dir, $".{Path.GetFileName(path)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                Span<byte> len = stackalloc byte[8];
                System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)padded);
                fs.Write(len);
                fs.Write(header);
                for (int i = header.Length; i < padded; i++) fs.WriteByte((byte)' ');
                foreach (var (name, dtype, shape) in list)
                {
                    long before = fs.Position;
                    writeData(name, fs);
                    if (fs.Position - before != shape.ElementCount * dtype.SizeOf())
                        throw new InvalidOperationException($"tensor '{name}': wrote {fs.Position - before} bytes, {dtype} {shape} needs {shape.ElementCount * dtype.SizeOf()}");
                }
                fs.Flush(true);
            }
            File.Move(tmp, path, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { }
            throw;
        }
    }

    /// <summary>Writes float32 tensors given as arrays (convenience for tests and small exports).</summary>
    public static void WriteF32(string path, IReadOnlyDictionary<string, (float[] Data, long[] Shape)> tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        var map = tensors.ToDictionary(kv => kv.Key,
            kv => new SafetensorsTensor(DType.F32, new Shape(kv.Value.Shape), System.Runtime.InteropServices.MemoryMarshal.AsBytes(kv.Value.Data.AsSpan()).ToArray()));
        Write(path, map);
    }
}
