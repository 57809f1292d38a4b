// A minimal GGUF v2/v3 reader: metadata (all value types, arrays as .NET arrays) and tensor infos, with raw tensor
// bytes on request. Used to validate written files and by tests; it does not run models.
using System.Text;

namespace Hub.Converters.Formats;

/// <summary>One tensor info of a GGUF file.</summary>
/// <param name="Name">Tensor name.</param>
/// <param name="Ne">ggml dims, innermost first.</param>
/// <param name="Type">ggml type.</param>
/// <param name="Offset">Absolute offset of the data in the file.</param>
/// <param name="Bytes">Size of the data.</param>
public sealed record GgufTensorInfo(string Name, long[] Ne, GgmlType Type, long Offset, long Bytes);

/// <summary>Reads a GGUF file's header; every malformed field is a <see cref="CheckpointFormatException"/> naming the file.</summary>
public sealed class GgufReader
{
    /// <summary>The file.</summary>
    public string Path { get; }
    /// <summary>Format version (2 or 3).</summary>
    public uint Version { get; }
    /// <summary>Metadata: string, integer, float, bool values, or arrays of them (string[], int[], float[], ...).</summary>
    public IReadOnlyDictionary<string, object> Metadata { get; }
    /// <summary>Tensor infos in file order.</summary>
    public IReadOnlyList<GgufTensorInfo> Tensors { get; }

    private GgufReader(string path, uint version, Dictionary<string, object> meta, List<GgufTensorInfo> tensors)
    {
        Path = path; Version = version; Metadata = meta; Tensors = tensors;
    }

    /// <summary>Reads the header of <paramref name="path"/>.</summary>
    public static GgufReader Open(string path)
    {
        if (!File.Exists(path)) throw new ModelFileNotFoundException(path, "GGUF file not found");
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        using var r = new BinaryReader(fs, Encoding.UTF8);
        try
        {
            if (r.ReadUInt32() != 0x46554747) throw new CheckpointFormatException(path, null, "not a GGUF file (magic is not 'GGUF')");
            uint version = r.ReadUInt32();
            if (version is not (2 or 3)) throw new CheckpointFormatException(path, null, $"GGUF version {version} is not supported (2 or 3)");
            ulong nt = r.ReadUInt64(), nkv = r.ReadUInt64();
            if (nt > 1_000_000 || nkv > 1_000_000) throw new CheckpointFormatException(path, null, $"implausible header: {nt} tensors, {nkv} metadata keys");
            var meta = new Dictionary<string, object>(StringComparer.Ordinal);
            for (ulong i = 0; i < nkv; i++)
            {
                var key = ReadString(r, path);
                meta[key] = ReadValue(r, (GgufValueType)r.ReadUInt32(), path, key);
            }
            var infos = new List<(string, long[], GgmlType, long)>();
            for (ulong i = 0; i < nt; i++)
            {
                var name = ReadString(r, path);
                uint nd = r.ReadUInt32();
                if (nd is < 1 or > 4) throw new CheckpointFormatException(path, name, $"{nd} dims (1..4 allowed)");
                var ne = new long[nd];
                for (int d = 0; d < nd; d++) ne[d] = checked((long)r.ReadUInt64());
                var type = (GgmlType)r.ReadUInt32();
                if (!Enum.IsDefined(type)) throw new CheckpointFormatException(path, name, $"ggml type {(uint)type} is not one Hub reads (F32, F16, Q4_0, Q8_0)");
                infos.Add((name, ne, type, checked((long)r.ReadUInt64())));
            }
            long align = meta.TryGetValue("general.alignment", out var a) ? Convert.ToInt64(a, System.Globalization.CultureInfo.InvariantCulture) : 32;
            long dataStart = (fs.Position + align - 1) / align * align;
            var tensors = new List<GgufTensorInfo>();
            foreach (var (name, ne, type, off) in infos)
            {
                long rows = 1;
                for (int d = 1; d < ne.Length; d++) rows *= ne[d];
                long bytes = type.RowBytes(ne[0]) * rows;
                if (dataStart + off + bytes > fs.Length)
                    throw new CheckpointFormatException(path, name, $"data [{dataStart + off}, {dataStart + off + bytes}) runs past the end of the file ({fs.Length} bytes): truncated");
                tensors.Add(new GgufTensorInfo(name, ne, type, dataStart + off, bytes));
            }
            return new GgufReader(path, version, meta, tensors);
        }
        catch (EndOfStreamException e) { throw new CheckpointFormatException(path, null, "truncated GGUF header", e); }
    }

    /// <summary>The tensor named <paramref name="name"/>.</summary>
    public GgufTensorInfo Tensor(string name) =>
        Tensors.FirstOrDefault(t => t.Name == name) ?? throw new CheckpointFormatException(Path, name, "tensor not in the GGUF file");

    /// <summary>Raw bytes of a tensor.</summary>
    public byte[] ReadBytes(GgufTensorInfo t)
    {
        using var fs = new FileStream(Path, FileMode.Open, FileAccess.Read, FileShare.Read);
        fs.Position = t.Offset;
        var b = new byte[t.Bytes];
        fs.ReadExactly(b);
        return b;
    }

    /// <summary>A tensor dequantized to float32 (row-major, innermost dim fastest).</summary>
    public float[] ReadF32(string name)
    {
        var t = Tensor(name);
        return GgufQuant.Dequantize(t.Type, ReadBytes(t));
    }

    private static string ReadString(BinaryReader r, string path)
    {
        ulong n = r.ReadUInt64();
        if (n > 1 << 24) throw new CheckpointFormatException(path, null, $"string of {n} bytes: corrupt header");
        return Encoding.UTF8.GetString(r.ReadBytes((int)n));
    }

    private static object ReadValue(BinaryReader r, GgufValueType t, string path, string key) => t switch
    {
        GgufValueType.UInt8 => r.ReadByte(),
        GgufValueType.Int8 => r.ReadSByte(),
        GgufValueType.UInt16 => r.ReadUInt16(),
        GgufValueType.Int16 => r.ReadInt16(),
        GgufValueType.UInt32 => r.ReadUInt32(),
        GgufValueType.Int32 => r.ReadInt32(),
        GgufValueType.Float32 => r.ReadSingle(),
        GgufValueType.Bool => r.ReadByte() != 0,
        GgufValueType.String => ReadString(r, path),
        GgufValueType.UInt64 => r.ReadUInt64(),
        GgufValueType.Int64 => r.ReadInt64(),
        GgufValueType.Float64 => r.ReadDouble(),
        GgufValueType.Array => ReadArray(r, path, key),
        _ => throw new CheckpointFormatException(path, null, $"metadata '{key}' has unknown value type {(uint)t}"),
    };

    private static object ReadArray(BinaryReader r, string path, string key)
    {
        var et = (GgufValueType)r.ReadUInt32();
        ulong n = r.ReadUInt64();
        if (n > 1 << 26) throw new CheckpointFormatException(path, null, $"metadata '{key}': array of {n} elements: corrupt header");
        int count = (int)n;
        switch (et)
        {
            case GgufValueType.String: { var a = new string[count]; for (int i = 0; i < count; i++) a[i] = ReadString(r, path); return a; }
            case GgufValueType.Float32: { var a = new float[count]; for (int i = 0; i < count; i++) a[i] = r.ReadSingle(); return a; }
            case GgufValueType.Int32: { var a = new int[count]; for (int i = 0; i < count; i++) a[i] = r.ReadInt32(); return a; }
            case GgufValueType.UInt32: { var a = new uint[count]; for (int i = 0; i < count; i++) a[i] = r.ReadUInt32(); return a; }
            default: { var a = new object[count]; for (int i = 0; i < count; i++) a[i] = ReadValue(r, et, path, key); return a; }
        }
    }
}
