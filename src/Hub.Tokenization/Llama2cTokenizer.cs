using System.Buffers.Binary;
using System.Text;

namespace Hub.Tokenization;

/// <summary>
/// llama2.c's tokenizer (<c>tok*.bin</c>) with <c>run.c</c>'s exact rules: BOS, a dummy-prefix <c>" "</c> token,
/// code-point pieces with byte fallback (byte + 3), then repeatedly merge the adjacent pair whose concatenation is the
/// highest-scoring piece (leftmost on ties). The id count is not stored in the file; it is the checkpoint's vocab_size.
/// </summary>
public sealed class Llama2cTokenizer : HubTokenizer
{
    /// <summary>run.c's fixed BOS id.</summary>
    public const int Bos = 1;
    /// <summary>run.c's fixed EOS id.</summary>
    public const int Eos = 2;

    private readonly byte[][] _pieces;
    private readonly string[] _keys;          // pieces as Latin-1 strings: byte-exact dictionary keys
    private readonly float[] _scores;
    private readonly Dictionary<string, int> _lookup = new(StringComparer.Ordinal);
    private readonly int[] _byteValue;        // -1, or the raw byte a <0xHH> piece stands for
    private readonly int _spaceId;

    /// <summary>The <c>max_token_length</c> header field.</summary>
    public int MaxTokenLength { get; }

    private Llama2cTokenizer(byte[][] pieces, float[] scores, int maxTokenLength, string path)
    {
        _pieces = pieces;
        _scores = scores;
        MaxTokenLength = maxTokenLength;
        _keys = new string[pieces.Length];
        _byteValue = new int[pieces.Length];
        for (int i = 0; i < pieces.Length; i++)
        {
            _keys[i] = Encoding.Latin1.GetString(pieces[i]);
            _lookup.TryAdd(_keys[i], i);       // run.c's bsearch over a sorted copy; pieces are unique in real files
            _byteValue[i] = ParseBytePiece(_keys[i]);
        }
        _spaceId = _lookup.TryGetValue(" ", out var sp) ? sp : -1;
        if (pieces.Length <= Eos) throw new TokenizerException($"{path}: vocab_size {pieces.Length} is too small for <unk>, BOS and EOS");
    }

    /// <summary>Reads <paramref name="tokBinPath"/> holding <paramref name="vocabSize"/> entries (the checkpoint header's |vocab_size|).</summary>
    public static Llama2cTokenizer Load(string tokBinPath, int vocabSize)
    {
        if (!File.Exists(tokBinPath)) throw new ModelFileNotFoundException(tokBinPath, "llama2.c tokenizer file (tok*.bin / tokenizer.bin) is required");
        if (vocabSize <= 0) throw new ArgumentOutOfRangeException(nameof(vocabSize), vocabSize, "vocab size must be positive (use |vocab_size| of the checkpoint header)");
        var data = File.ReadAllBytes(tokBinPath);
        int off = 0;
        int ReadInt(string what)
        {
            if (off + 4 > data.Length)
                throw new CheckpointFormatException(tokBinPath, null, $"truncated at byte {off} while reading {what}; expected {vocabSize} entries (is vocab_size right?)");
            var v = BinaryPrimitives.ReadInt32LittleEndian(data.AsSpan(off));
            off += 4;
            return v;
        }
        int maxLen = ReadInt("max_token_length");
        var pieces = new byte[vocabSize][];
        var scores = new float[vocabSize];
        for (int i = 0; i < vocabSize; i++)
        {
            scores[i] = BitConverter.Int32BitsToSingle(ReadInt($"the score of entry {i}"));
            int len = ReadInt($"the length of entry {i}");
            if (len < 0 || off + len > data.Length)
                throw new CheckpointFormatException(tokBinPath, null, $"entry {i} claims {len} bytes at offset {off} but the file has {data.Length} bytes");
            pieces[i] = data.AsSpan(off, len).ToArray();
            off += len;
        }
        return new Llama2cTokenizer(pieces, scores, maxLen, tokBinPath);
    }

    /// <summary>
    /// Reads <paramref name="tokBinPath"/> when the vocabulary size is unknown: entries are read until the file ends,
    /// which must happen exactly at an entry boundary.
    /// </summary>
    public static Llama2cTokenizer Load(string tokBinPath)
    {
        if (!File.Exists(tokBinPath)) throw new ModelFileNotFoundException(tokBinPath, "llama2.c tokenizer file (tok*.bin / tokenizer.bin) is required");
        var data = File.ReadAllBytes(tokBinPath);
        int off = 4, n = 0;
        while (off < data.Length)
        {
            if (off + 8 > data.Length) throw new CheckpointFormatException(tokBinPath, null, $"truncated entry {n} at byte {off}");
            int len = BinaryPrimitives.ReadInt32LittleEndian(data.AsSpan(off + 4));
            if (len < 0 || off + 8 + len > data.Length) throw new CheckpointFormatException(tokBinPath, null, $"entry {n} claims {len} bytes past the end of the file");
            off += 8 + len;
            n++;
        }
        return Load(tokBinPath, n);
    }

    // sscanf(piece, "<0x%02hhX>"): "<0x" then one or two hex digits.
    private static int ParseBytePiece(string p)
    {
        if (p.Length < 4 || !p.StartsWith("<0x", StringComparison.Ordinal)) return -1;
        int v = 0, n = 0;
        for (int i = 3; i < p.Length && n < 2 && Uri.IsHexDigit(p[i]); i++, n++) v = v * 16 + Convert.ToInt32(p[i].ToString(), 16);
        return n == 0 ? -1 : v;
    }

    /// <inheritdoc/>
    public override int VocabSize => _pieces.Length;
    /// <inheritdoc/>
    public override int? BosTokenId => Bos;
    /// <inheritdoc/>
    public override IReadOnlyList<int> EosTokenIds { get; } = new[] { Eos };
    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, int> SpecialTokens => new Dictionary<string, int> { ["<unk>"] = 0, ["<s>"] = Bos, ["</s>"] = Eos };

    /// <summary>The piece's bytes (with <c>▁</c> already a space, <c>&lt;0xHH&gt;</c> spelled out).</summary>
    public ReadOnlySpan<byte> PieceBytes(int id) { CheckId(id); return _pieces[id]; }

    /// <summary>The piece's score (merge priority).</summary>
    public float Score(int id) { CheckId(id); return _scores[id]; }

    /// <summary>run.c's <c>encode(text, bos, eos)</c>.</summary>
    public int[] Encode(string text, bool bos, bool eos)
    {
        ArgumentNullException.ThrowIfNull(text);
        var bytes = Encoding.UTF8.GetBytes(text);
        int nul = Array.IndexOf(bytes, (byte)0);          // a C string ends at NUL
        if (nul >= 0) bytes = bytes[..nul];
        var tokens = new List<int>(bytes.Length + 3);
        if (bos) tokens.Add(Bos);
        if (bytes.Length > 0)
        {
            if (_spaceId < 0) throw new TokenizerException("the llama2.c vocabulary has no \" \" piece for the dummy prefix");
            tokens.Add(_spaceId);
        }
        int start = 0;
        for (int c = 0; c < bytes.Length; c++)
        {
            if ((bytes[c] & 0xC0) != 0x80) start = c;
            int len = c - start + 1;
            if (c + 1 < bytes.Length && (bytes[c + 1] & 0xC0) == 0x80 && len < 4) continue;
            var key = Encoding.Latin1.GetString(bytes, start, len);
            if (_lookup.TryGetValue(key, out var id)) tokens.Add(id);
            else for (int i = start; i <= c; i++) tokens.Add(bytes[i] + 3);
            start = c + 1;
        }
        while (true)
        {
            float best = -1e10f;
            int bestId = -1, bestIdx = -1;
            for (int i = 0; i + 1 < tokens.Count; i++)
            {
                if (_lookup.TryGetValue(string.Concat(_keys[tokens[i]], _keys[tokens[i + 1]]), out var id) && _scores[id] > best)
                {
                    best = _scores[id]; bestId = id; bestIdx = i;
                }
            }
            if (bestIdx < 0) break;
            tokens[bestIdx] = bestId;
            tokens.RemoveAt(bestIdx + 1);
        }
        if (eos) tokens.Add(Eos);
        return tokens.ToArray();
    }

    /// <summary>Encodes as run.c does for a prompt: BOS, no EOS (<paramref name="addSpecialTokens"/> controls the BOS).</summary>
    public override int[] Encode(string text, bool addSpecialTokens = true) => Encode(text, addSpecialTokens, false);

    /// <summary>
    /// Proper UTF-8 decode: run.c's piece rule (one leading space dropped after BOS, <c>&lt;0xHH&gt;</c> = raw byte) with all
    /// bytes assembled into UTF-8 (invalid sequences become U+FFFD). <paramref name="previousToken"/> is the id before
    /// <paramref name="ids"/> (-1 for none), so a continuation after BOS loses its leading space as run.c prints it.
    /// </summary>
    public string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens, int previousToken)
    {
        var bytes = new List<byte>();
        int prev = previousToken;
        foreach (var id in ids)
        {
            CheckId(id);
            if (!(skipSpecialTokens && id <= Eos)) AppendPiece(prev, id, bytes);
            prev = id;
        }
        return Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(bytes));
    }

    /// <inheritdoc/>
    public override string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false) => Decode(ids, skipSpecialTokens, -1);

    /// <summary>
    /// Exactly the bytes run.c prints for <paramref name="ids"/> (each decoded against its predecessor, starting from
    /// <paramref name="previousToken"/>): single-byte pieces appear only when printable ASCII or whitespace, so
    /// byte-fallback characters vanish (<c>"naïve"</c> prints as <c>"nave"</c>). Returned as Latin-1-free UTF-8 text.
    /// </summary>
    public string DecodeRunC(ReadOnlySpan<int> ids, int previousToken)
    {
        var bytes = new List<byte>();
        var piece = new List<byte>(8);
        int prev = previousToken;
        foreach (var id in ids)
        {
            CheckId(id);
            piece.Clear();
            AppendPiece(prev, id, piece);
            prev = id;
            int n = piece.IndexOf(0);                   // printf("%s") stops at NUL
            if (n < 0) n = piece.Count;
            if (n == 0) continue;
            if (n == 1 && !IsPrintOrSpace(piece[0])) continue;
            for (int i = 0; i < n; i++) bytes.Add(piece[i]);
        }
        return Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(bytes));

        static bool IsPrintOrSpace(byte b) => (b >= 0x20 && b <= 0x7E) || (b >= 0x09 && b <= 0x0D);
    }

    private void AppendPiece(int prev, int id, List<byte> sink)
    {
        if (_byteValue[id] >= 0) { sink.Add((byte)_byteValue[id]); return; }
        var p = _pieces[id];
        int start = prev == Bos && p.Length > 0 && p[0] == (byte)' ' ? 1 : 0;
        for (int i = start; i < p.Length; i++) sink.Add(p[i]);
    }

    private void CheckId(int id)
    {
        if ((uint)id >= (uint)_pieces.Length)
            throw new ModelInputException($"token id {id} is outside the llama2.c vocabulary (size {_pieces.Length})");
    }

    /// <inheritdoc/>
    public override int? TokenToId(string token) => _lookup.TryGetValue(Encoding.Latin1.GetString(Encoding.UTF8.GetBytes(token)), out var id) ? id : null;

    /// <inheritdoc/>
    public override string? IdToToken(int id) => (uint)id < (uint)_pieces.Length ? Encoding.UTF8.GetString(_pieces[id]) : null;
}
