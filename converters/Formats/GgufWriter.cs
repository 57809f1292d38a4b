// GGUF v3 (ggml's docs/gguf.md): "GGUF" magic, version 3, tensor count, metadata key/value pairs, tensor infos
// (dims innermost first, ggml type, offset into the data section), padding to general.alignment, then the tensor data.
// Little-endian only; only the five types Hub writes (F32, F16, BF16, Q4_0, Q8_0) have block layouts here.
using System.Text;

namespace Hub.Converters.Formats;

/// <summary>ggml tensor types Hub reads and writes (numbers are ggml's <c>enum ggml_type</c>).</summary>
public enum GgmlType : uint
{
    /// <summary>float32.</summary>
    F32 = 0,
    /// <summary>IEEE half.</summary>
    F16 = 1,
    /// <summary>Blocks of 32: f16 scale d + 16 bytes of nibbles, value = (q - 8) · d.</summary>
    Q4_0 = 2,
    /// <summary>Blocks of 32: f16 scale d + 32 int8, value = q · d.</summary>
    Q8_0 = 8,
    /// <summary>bfloat16: the upper half of a float32 (ggml's GGML_TYPE_BF16).</summary>
    BF16 = 30,
}

/// <summary>GGUF metadata value types (<c>enum gguf_type</c>).</summary>
public enum GgufValueType : uint
{
    /// <summary>u8.</summary>
    UInt8 = 0,
    /// <summary>i8.</summary>
    Int8 = 1,
    /// <summary>u16.</summary>
    UInt16 = 2,
    /// <summary>i16.</summary>
    Int16 = 3,
    /// <summary>u32.</summary>
    UInt32 = 4,
    /// <summary>i32.</summary>
    Int32 = 5,
    /// <summary>f32.</summary>
    Float32 = 6,
    /// <summary>bool (one byte).</summary>
    Bool = 7,
    /// <summary>u64 length + UTF-8 bytes.</summary>
    String = 8,
    /// <summary>element type, u64 count, elements.</summary>
    Array = 9,
    /// <summary>u64.</summary>
    UInt64 = 10,
    /// <summary>i64.</summary>
    Int64 = 11,
    /// <summary>f64.</summary>
    Float64 = 12,
}

/// <summary>Sizes of ggml types.</summary>
public static class GgmlTypeInfo
{
    /// <summary>Elements per block (1 for plain types).</summary>
    public static int BlockSize(this GgmlType t) => t is GgmlType.Q4_0 or GgmlType.Q8_0 ? 32 : 1;

    /// <summary>Bytes per block.</summary>
    public static int BlockBytes(this GgmlType t) => t switch
    {
        GgmlType.F32 => 4,
        GgmlType.F16 or GgmlType.BF16 => 2,
        GgmlType.Q4_0 => 18,
        GgmlType.Q8_0 => 34,
        _ => throw new ArgumentOutOfRangeException(nameof(t), t, "unsupported ggml type"),
    };

    /// <summary>Bytes of a row of <paramref name="n"/> elements (n must be a multiple of the block size).</summary>
    public static long RowBytes(this GgmlType t, long n)
    {
        if (n % t.BlockSize() != 0) throw new ArgumentException($"{t} needs rows that are a multiple of {t.BlockSize()} elements, got {n}");
        return n / t.BlockSize() * t.BlockBytes();
    }
}

/// <summary>
/// Writes a GGUF v3 file: add metadata and tensors (each with a callback that streams its bytes), then
/// <see cref="Write"/>. Tensor bytes are produced one tensor at a time while writing, so a model larger than memory
/// can be written; the file appears under its name only when complete.
/// </summary>
public sealed class GgufWriter
{
    /// <summary>The data alignment written as <c>general.alignment</c>.</summary>
    public const int Alignment = 32;
    private const uint Magic = 0x46554747; // "GGUF"

    private readonly List<(string Key, GgufValueType Type, object Value)> _kv = new();
    private readonly List<(string Name, long[] Ne, GgmlType Type, long Bytes, Action<Stream> Write)> _tensors = new();

    /// <summary>Creates a writer whose metadata starts with <c>general.alignment</c> = 32.</summary>
    public GgufWriter() => Add("general.alignment", (uint)Alignment);

    /// <summary>Adds a string value.</summary>
    public void Add(string key, string value) => Put(key, GgufValueType.String, value);
    /// <summary>Adds a u32 value.</summary>
    public void Add(string key, uint value) => Put(key, GgufValueType.UInt32, value);
    /// <summary>Adds an i32 value.</summary>
    public void Add(string key, int value) => Put(key, GgufValueType.Int32, value);
    /// <summary>Adds a u64 value.</summary>
    public void Add(string key, ulong value) => Put(key, GgufValueType.UInt64, value);
    /// <summary>Adds an f32 value.</summary>
    public void Add(string key, float value) => Put(key, GgufValueType.Float32, value);
    /// <summary>Adds an f64 value.</summary>
    public void Add(string key, double value) => Put(key, GgufValueType.Float64, value);
    /// <summary>Adds a bool value.</summary>
    public void Add(string key, bool value) => Put(key, GgufValueType.Bool, value);
    /// <summary>Adds an array of strings.</summary>
    public void Add(string key, IReadOnlyList<string> values) => Put(key, GgufValueType.Array, values);
    /// <summary>Adds an array of f32.</summary>
    public void Add(string key, float[] values) => Put(key, GgufValueType.Array, values);
    /// <summary>Adds an array of i32.</summary>
    public void Add(string key, int[] values) => Put(key, GgufValueType.Array, values);

    private void Put(string key, GgufValueType type, object value)
    {
        if (_kv.Any(k => k.Key == key)) throw new ArgumentException($"GGUF key '{key}' is already set");
        _kv.Add((key, type, value));
    }

    /// <summary>
    /// Adds a tensor with ggml dims <paramref name="ne"/> (innermost first: a PyTorch [out, in] matrix is [in, out]).
    /// <paramref name="write"/> must write exactly the tensor's byte size; it runs during <see cref="Write"/>.
    /// </summary>
    public void AddTensor(string name, GgmlType type, long[] ne, Action<Stream> write)
    {
        if (_tensors.Any(t => t.Name == name)) throw new ArgumentException($"GGUF tensor '{name}' is already added");
        if (ne.Length is < 1 or > 4) throw new ArgumentException($"GGUF tensor '{name}' has {ne.Length} dims; 1..4 are allowed");
        long rows = 1;
        for (int i = 1; i < ne.Length; i++) rows *= ne[i];
        _tensors.Add((name, ne, type, type.RowBytes(ne[0]) * rows, write));
    }

    /// <summary>Number of tensors added.</summary>
    public int TensorCount => _tensors.Count;

    /// <summary>Writes the file to <paramref name="path"/> via a temporary sibling and a rename.</summary>
    public void Write(string path)
    {
        path = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var tmp = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, $".{Path.GetFileName(path)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var fs = new ChunkedFileWriter(tmp))   // the same 2 MiB folios as our IR files: the peer maps its weights as we do ours
            {
                using (var w = new BinaryWriter(fs, Encoding.UTF8, leaveOpen: true))
                {
                    w.Write(Magic);
                    w.Write(3u);
                    w.Write((ulong)_tensors.Count);
                    w.Write((ulong)_kv.Count);
                    foreach (var (key, type, value) in _kv) { WriteString(w, key); w.Write((uint)type); WriteValue(w, type, value); }
                    long offset = 0;
                    foreach (var t in _tensors)
                    {
                        WriteString(w, t.Name);
                        w.Write((uint)t.Ne.Length);
                        foreach (var d in t.Ne) w.Write((ulong)d);
                        w.Write((uint)t.Type);
                        w.Write((ulong)offset);
                        offset = Align(offset + t.Bytes);
                    }
                }
                Pad(fs);
                foreach (var t in _tensors)
                {
                    long before = fs.Position;
                    t.Write(fs);
                    long written = fs.Position - before;
                    if (written != t.Bytes) throw new InvalidOperationException($"GGUF tensor '{t.Name}': wrote {written} bytes, expected {t.Bytes}");
                    Pad(fs);
                }
                fs.Flush(true);
            }
            File.Move(tmp, path, overwrite: true);
        }
        finally
        {
            if (File.Exists(tmp)) File.Delete(tmp);
        }
    }

    private static long Align(long x) => (x + Alignment - 1) / Alignment * Alignment;

    private static void Pad(Stream s)
    {
        int pad = (int)(Align(s.Position) - s.Position);
        if (pad > 0) s.Write(new byte[pad]);
    }

    private static void WriteString(BinaryWriter w, string s)
    {
        var b = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)b.Length);
        w.Write(b);
    }

    private static void WriteValue(BinaryWriter w, GgufValueType type, object v)
    {
        switch (v)
        {
            case string s: WriteString(w, s); break;
            case uint u: w.Write(u); break;
            case int i: w.Write(i); break;
            case ulong ul: w.Write(ul); break;
            case float f: w.Write(f); break;
            case double d: w.Write(d); break;
            case bool b: w.Write((byte)(b ? 1 : 0)); break;
            case float[] fa: w.Write((uint)GgufValueType.Float32); w.Write((ulong)fa.Length); foreach (var x in fa) w.Write(x); break;
            case int[] ia: w.Write((uint)GgufValueType.Int32); w.Write((ulong)ia.Length); foreach (var x in ia) w.Write(x); break;
            case IReadOnlyList<string> sa: w.Write((uint)GgufValueType.String); w.Write((ulong)sa.Count); foreach (var x in sa) WriteString(w, x); break;
            default: throw new ArgumentException($"unsupported GGUF value {v.GetType().Name} for type {type}");
        }
    }
}
