using System.Text;
using System.Text.Json;

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
        var names = tensors.Keys.OrderBy(k => k, StringComparer.Ordinal).ToList();
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
            foreach (var name in names)
            {
                if (name == "__metadata__") throw new ArgumentException("'__metadata__' is reserved and cannot name a tensor", nameof(tensors));
                var t = tensors[name];
                long expected = t.Shape.ElementCount * t.DType.SizeOf();
                if (t.Data.Length != expected)
                    throw new ArgumentException($"tensor '{name}': {t.Data.Length} bytes given, {t.DType} {t.Shape} needs {expected}", nameof(tensors));
                w.WriteStartObject(name);
                w.WriteString("dtype", t.DType.ToSafetensorsName());
                w.WriteStartArray("shape");
                foreach (var d in t.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset + expected);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += expected;
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
                foreach (var name in names) fs.Write(tensors[name].Data.Span);
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
