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
        var c = new Cursor(r, path);
        try
        {
            c.Field = "magic";
            if (r.ReadUInt32() != 0x46554747) throw c.Fail("not a GGUF file (magic is not 'GGUF')");
            c.Field = "version";
            uint version = r.ReadUInt32();
            if (version is not (2 or 3)) throw c.Fail($"GGUF version {version} is not supported (2 or 3); re-export the file with a current llama.cpp or hub convert --to gguf");
            c.Field = "tensor_count";
            ulong nt = r.ReadUInt64();
            // Every tensor info takes at least 8 (name length) + 4 (n_dims) + 8 (one dim) + 4 (type) + 8 (offset) bytes.
            c.Need(nt, 32, "tensor infos");
            c.Field = "metadata_kv_count";
            ulong nkv = r.ReadUInt64();
            // Every key/value takes at least 8 (key length) + 4 (type) + 1 (smallest value) bytes.
            c.Need(nkv, 13, "metadata key/values");
            var meta = new Dictionary<string, object>(StringComparer.Ordinal);
            for (ulong i = 0; i < nkv; i++)
            {
                c.Field = $"metadata key #{i}";
                var key = c.ReadString();
                c.Field = key;
                meta[key] = ReadValue(c, (GgufValueType)r.ReadUInt32(), nested: false);
            }
            long align = Alignment(meta, c);
            var infos = new List<(string, long[], GgmlType, long)>();
            for (ulong i = 0; i < nt; i++)
            {
                c.Field = $"tensor info #{i} name";
                var name = c.ReadString();
                c.Field = $"tensor '{name}' n_dims";
                uint nd = r.ReadUInt32();
                if (nd is < 1 or > 4) throw c.Fail($"{nd} dims (1..4 allowed)");
                var ne = new long[nd];
                for (int d = 0; d < nd; d++)
                {
                    c.Field = $"tensor '{name}' ne[{d}]";
                    ulong v = r.ReadUInt64();
                    if (v > int.MaxValue) throw c.Fail($"dimension {v} is larger than {int.MaxValue}: corrupt tensor info");
                    ne[d] = (long)v;
                }
                c.Field = $"tensor '{name}' type";
                var type = (GgmlType)r.ReadUInt32();
                if (!Enum.IsDefined(type)) throw c.Fail($"ggml type {(uint)type} is not one Hub reads (F32, F16, Q4_0, Q8_0); re-export the file with one of those types");
                if (ne[0] % type.BlockSize() != 0) throw c.Fail($"{type} rows need a multiple of {type.BlockSize()} elements, but ne[0] is {ne[0]}");
                c.Field = $"tensor '{name}' offset";
                ulong off = r.ReadUInt64();
                if (off > (ulong)fs.Length) throw c.Fail($"offset {off} is past the end of the file ({fs.Length} bytes): truncated or corrupt");
                if ((long)off % align != 0) throw c.Fail($"offset {off} is not a multiple of general.alignment ({align}): corrupt tensor info");
                infos.Add((name, ne, type, (long)off));
            }
            long dataStart = (fs.Position + align - 1) / align * align;
            var tensors = new List<GgufTensorInfo>();
            foreach (var (name, ne, type, off) in infos)
            {
                c.Field = $"tensor '{name}' data";
                // Each dimension is at most int.MaxValue, so a product of up to four can overflow long: checked.
                long bytes;
                try
                {
                    long rows = 1;
                    for (int d = 1; d < ne.Length; d++) rows = checked(rows * ne[d]);
                    bytes = checked(type.RowBytes(ne[0]) * rows);
                }
                catch (OverflowException e) { throw c.Fail($"size of dims [{string.Join(", ", ne)}] overflows 64 bits: corrupt tensor info", e); }
                if (bytes > fs.Length - dataStart - off)
                    throw c.Fail($"data at {dataStart + off} of {bytes} bytes runs past the end of the file ({fs.Length} bytes): truncated; download or export the file again");
                tensors.Add(new GgufTensorInfo(name, ne, type, dataStart + off, bytes));
            }
            return new GgufReader(path, version, meta, tensors);
        }
        catch (EndOfStreamException e) { throw c.Fail("the file ends inside this field: truncated GGUF header; download or export the file again", e); }
    }

    private static long Alignment(Dictionary<string, object> meta, Cursor c)
    {
        if (!meta.TryGetValue("general.alignment", out var a)) return 32;
        c.Field = "general.alignment";
        long align = a switch
        {
            byte v => v, sbyte v => v, ushort v => v, short v => v, uint v => v, int v => v,
            ulong v => v > int.MaxValue ? -1 : (long)v, long v => v,
            _ => throw c.Fail($"must be an unsigned integer, got {a.GetType().Name}"),
        };
        if (align <= 0 || align > 1 << 30 || (align & (align - 1)) != 0)
            throw c.Fail($"{a} is not a positive power of two (GGUF needs one, usually 32): corrupt metadata");
        return align;
    }

    /// <summary>The tensor named <paramref name="name"/>.</summary>
    public GgufTensorInfo Tensor(string name) =>
        Tensors.FirstOrDefault(t => t.Name == name) ?? throw new CheckpointFormatException(Path, name, "tensor not in the GGUF file");

    /// <summary>Raw bytes of a tensor.</summary>
    public byte[] ReadBytes(GgufTensorInfo t)
    {
        if (t.Bytes > Array.MaxLength)
            throw new CheckpointFormatException(Path, t.Name, $"{t.Bytes} bytes is more than one .NET array holds; read it in parts or quantize it");
        using var fs = new FileStream(Path, FileMode.Open, FileAccess.Read, FileShare.Read);
        if (t.Offset + t.Bytes > fs.Length)
            throw new CheckpointFormatException(Path, t.Name, $"data [{t.Offset}, {t.Offset + t.Bytes}) runs past the end of the file ({fs.Length} bytes): the file was truncated after it was opened");
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

    private static object ReadValue(Cursor c, GgufValueType t, bool nested)
    {
        var r = c.Reader;
        return t switch
        {
            GgufValueType.UInt8 => r.ReadByte(),
            GgufValueType.Int8 => r.ReadSByte(),
            GgufValueType.UInt16 => r.ReadUInt16(),
            GgufValueType.Int16 => r.ReadInt16(),
            GgufValueType.UInt32 => r.ReadUInt32(),
            GgufValueType.Int32 => r.ReadInt32(),
            GgufValueType.Float32 => r.ReadSingle(),
            GgufValueType.Bool => r.ReadByte() != 0,
            GgufValueType.String => c.ReadString(),
            GgufValueType.UInt64 => r.ReadUInt64(),
            GgufValueType.Int64 => r.ReadInt64(),
            GgufValueType.Float64 => r.ReadDouble(),
            GgufValueType.Array when !nested => ReadArray(c),
            GgufValueType.Array => throw c.Fail("arrays of arrays are not GGUF (llama.cpp rejects them too): corrupt metadata"),
            _ => throw c.Fail($"unknown value type {(uint)t}: corrupt metadata"),
        };
    }

    private static object ReadArray(Cursor c)
    {
        var r = c.Reader;
        var et = (GgufValueType)r.ReadUInt32();
        ulong n = r.ReadUInt64();
        int min = et switch
        {
            GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
            GgufValueType.UInt16 or GgufValueType.Int16 => 2,
            GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
            GgufValueType.UInt64 or GgufValueType.Int64 or GgufValueType.Float64 or GgufValueType.String => 8,
            GgufValueType.Array => throw c.Fail("arrays of arrays are not GGUF (llama.cpp rejects them too): corrupt metadata"),
            _ => throw c.Fail($"array of unknown value type {(uint)et}: corrupt metadata"),
        };
        c.Need(n, min, "array elements");
        int count = (int)n;
        switch (et)
        {
            case GgufValueType.String: { var a = new string[count]; for (int i = 0; i < count; i++) a[i] = c.ReadString(); return a; }
            case GgufValueType.Float32: { var a = new float[count]; for (int i = 0; i < count; i++) a[i] = r.ReadSingle(); return a; }
            case GgufValueType.Int32: { var a = new int[count]; for (int i = 0; i < count; i++) a[i] = r.ReadInt32(); return a; }
            case GgufValueType.UInt32: { var a = new uint[count]; for (int i = 0; i < count; i++) a[i] = r.ReadUInt32(); return a; }
            default: { var a = new object[count]; for (int i = 0; i < count; i++) a[i] = ReadValue(c, et, nested: true); return a; }
        }
    }

    /// <summary>Reading position with the field being read, so every error names the file and the field.</summary>
    private sealed class Cursor(BinaryReader reader, string path)
    {
        public BinaryReader Reader { get; } = reader;
        public string Field { get; set; } = "header";

        private long Remaining => Reader.BaseStream.Length - Reader.BaseStream.Position;

        public CheckpointFormatException Fail(string message, Exception? inner = null) =>
            new(path, null, $"field '{Field}': {message}", inner);

        /// <summary>Refuses a count whose smallest encoding is longer than what is left of the file (before allocating for it).</summary>
        public void Need(ulong count, int minBytesEach, string what)
        {
            if (count > (ulong)Remaining / (ulong)minBytesEach)
                throw Fail($"{count} {what} cannot fit in the {Remaining} bytes left in the file: truncated or corrupt");
        }

        public string ReadString()
        {
            ulong n = Reader.ReadUInt64();
            if (n > (ulong)Remaining) throw Fail($"string of {n} bytes runs past the end of the file ({Remaining} bytes left): truncated or corrupt");
            if (n > 1 << 24) throw Fail($"string of {n} bytes (more than 16 MiB): corrupt");
            var bytes = Reader.ReadBytes((int)n);
            if (bytes.Length != (int)n) throw Fail($"string of {n} bytes, only {bytes.Length} read: truncated");
            return Encoding.UTF8.GetString(bytes);
        }
    }
}
