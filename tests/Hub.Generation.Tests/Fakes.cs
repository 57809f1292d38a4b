using System.Text;
using Hub.Generation;
using Hub.Tokenization;

namespace Hub.Generation.Tests;

/// <summary>
/// A deterministic stateful "model": its cache is the list of fed tokens per row, and the logits of a row depend only on
/// the row's TRUE tokens (padding excluded) — their count (the true position) and the last few ids — so a row generated
/// in a padded batch must equal the same row generated alone. Counts calls and tokens fed.
/// </summary>
internal sealed class FakeRunner : ICausalLMRunner
{
    public delegate void LogitsFn(ReadOnlySpan<int> trueTokens, Span<float> dest);

    private readonly LogitsFn _fn;
    private List<int>[] _rows = Array.Empty<List<int>>();
    private int[] _pads = Array.Empty<int>();
    private float[] _out = Array.Empty<float>();

    public FakeRunner(int vocab, int maxContext = 512, LogitsFn? fn = null)
    {
        VocabSize = vocab;
        MaxContext = maxContext;
        _fn = fn ?? HashLogits;
    }

    public int VocabSize { get; }
    public int MaxContext { get; }
    public int Batch => _rows.Length;
    public int PastLength => _rows.Length == 0 ? 0 : _rows[0].Count;
    public int ForwardCalls { get; private set; }
    public long TokensFed { get; private set; }
    public int ReorderCalls { get; private set; }
    public List<int> SeqLens { get; } = new();

    public IReadOnlyList<int> Row(int b) => _rows[b];

    /// <summary>Pseudo-random logits in [0, 8) from the true length and the last three true tokens.</summary>
    public static void HashLogits(ReadOnlySpan<int> t, Span<float> dest)
    {
        ulong h = 1469598103934665603UL ^ (ulong)t.Length;
        for (int i = Math.Max(0, t.Length - 3); i < t.Length; i++) h = (h ^ (ulong)t[i]) * 1099511628211UL;
        for (int v = 0; v < dest.Length; v++)
        {
            ulong x = (h ^ (ulong)v * 0x9E3779B97F4A7C15UL) * 0xBF58476D1CE4E5B9UL;
            x ^= x >> 31; x *= 0x94D049BB133111EBUL; x ^= x >> 29;
            dest[v] = (x >> 40) / (float)(1 << 24) * 8f;
        }
    }

    public ReadOnlySpan<float> Forward(ReadOnlySpan<int> tokens, int batch, int seqLen, ReadOnlySpan<int> leftPadding)
    {
        if (seqLen < 1 || tokens.Length != batch * seqLen) throw new ArgumentException("tokens/batch/seqLen mismatch");
        if (_rows.Length == 0)
        {
            _rows = Enumerable.Range(0, batch).Select(_ => new List<int>()).ToArray();
            _pads = leftPadding.Length == 0 ? new int[batch] : leftPadding.ToArray();
        }
        else
        {
            if (batch != _rows.Length) throw new InvalidOperationException($"batch {batch} != cache batch {_rows.Length}");
            if (leftPadding.Length != 0 && !leftPadding.SequenceEqual(_pads)) throw new InvalidOperationException("left padding changed within a generation");
        }
        if (PastLength + seqLen > MaxContext) throw new InvalidOperationException("context overflow");
        if (leftPadding.Length != 0 && leftPadding.Length != batch) throw new ArgumentException("leftPadding length");
        foreach (var t in tokens) if ((uint)t >= (uint)VocabSize) throw new ArgumentOutOfRangeException(nameof(tokens), $"id {t}");
        var allocBefore = GC.GetAllocatedBytesForCurrentThread();
        ForwardCalls++;
        TokensFed += tokens.Length;
        SeqLens.Add(seqLen);
        if (_out.Length != batch * VocabSize) _out = new float[batch * VocabSize];
        for (int b = 0; b < batch; b++)
        {
            _rows[b].AddRange(tokens.Slice(b * seqLen, seqLen).ToArray());
            var all = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_rows[b]);
            _fn(all[Math.Min(_pads[b], all.Length)..], _out.AsSpan(b * VocabSize, VocabSize));
        }
        AllocatedInForward += GC.GetAllocatedBytesForCurrentThread() - allocBefore;
        return _out.AsSpan(0, batch * VocabSize);
    }

    /// <summary>Bytes this fake allocated inside Forward (so tests can isolate the generator's own allocations).</summary>
    public long AllocatedInForward { get; private set; }

    public void Reset() { _rows = Array.Empty<List<int>>(); _pads = Array.Empty<int>(); }

    public void ReorderCache(ReadOnlySpan<int> rows)
    {
        ReorderCalls++;
        var old = _rows;
        var oldPads = _pads;
        _rows = new List<int>[rows.Length];
        _pads = new int[rows.Length];
        for (int i = 0; i < rows.Length; i++) { _rows[i] = new List<int>(old[rows[i]]); _pads[i] = oldPads[rows[i]]; }
    }

    public void TruncateCache(int length)
    {
        if (length < 0 || length > PastLength) throw new ArgumentOutOfRangeException(nameof(length));
        foreach (var r in _rows) r.RemoveRange(length, r.Count - length);
    }
}

/// <summary>
/// A small byte-level tokenizer: ids 0..255 are single bytes, then multi-byte merges, then special tokens. Decoding
/// concatenates bytes and decodes UTF-8 (invalid or incomplete sequences become U+FFFD), as byte-level BPE does.
/// </summary>
internal sealed class FakeTokenizer : HubTokenizer
{
    private readonly List<byte[]> _bytes = new();
    private readonly List<string?> _special = new();
    private readonly Dictionary<string, int> _specialIds = new();
    private readonly int[] _prefix;
    private readonly int? _bos;
    private readonly int[] _eos;

    public FakeTokenizer(IEnumerable<string> merges, IEnumerable<string> specials, string[]? prefix = null, string? bos = null, string[]? eos = null, string? chatTemplate = null)
    {
        for (int b = 0; b < 256; b++) { _bytes.Add(new[] { (byte)b }); _special.Add(null); }
        foreach (var m in merges) { _bytes.Add(Encoding.UTF8.GetBytes(m)); _special.Add(null); }
        foreach (var s in specials) { _specialIds[s] = _bytes.Count; _bytes.Add(Array.Empty<byte>()); _special.Add(s); }
        _prefix = (prefix ?? Array.Empty<string>()).Select(p => _specialIds[p]).ToArray();
        _bos = bos is null ? null : _specialIds[bos];
        _eos = (eos ?? Array.Empty<string>()).Select(e => _specialIds[e]).ToArray();
        ChatTemplate = chatTemplate;
    }

    public override int VocabSize => _bytes.Count;
    public override int? BosTokenId => _bos;
    public override IReadOnlyList<int> EosTokenIds => _eos;
    public override string? ChatTemplate { get; }
    public override IReadOnlyDictionary<string, int> SpecialTokens => _specialIds;

    public override int[] Encode(string text, bool addSpecialTokens = true)
    {
        var ids = new List<int>();
        if (addSpecialTokens) ids.AddRange(_prefix);
        int i = 0;
        var pending = new StringBuilder();
        while (i < text.Length)
        {
            string? sp = _specialIds.Keys.Where(s => string.CompareOrdinal(text, i, s, 0, s.Length) == 0).OrderByDescending(s => s.Length).FirstOrDefault();
            if (sp is not null) { EncodePlain(pending.ToString(), ids); pending.Clear(); ids.Add(_specialIds[sp]); i += sp.Length; continue; }
            pending.Append(text[i++]);
        }
        EncodePlain(pending.ToString(), ids);
        return ids.ToArray();
    }

    private void EncodePlain(string text, List<int> ids)
    {
        var b = Encoding.UTF8.GetBytes(text);
        int i = 0;
        while (i < b.Length)
        {
            int best = b[i], bestLen = 1;
            for (int id = 256; id < _bytes.Count; id++)
            {
                var m = _bytes[id];
                if (_special[id] is null && m.Length > bestLen && i + m.Length <= b.Length && b.AsSpan(i, m.Length).SequenceEqual(m)) { best = id; bestLen = m.Length; }
            }
            ids.Add(best);
            i += bestLen;
        }
    }

    public override string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false)
    {
        var sb = new StringBuilder();
        var buf = new List<byte>();
        foreach (var id in ids)
        {
            if ((uint)id >= (uint)_bytes.Count) throw new ArgumentOutOfRangeException(nameof(ids));
            if (_special[id] is { } s)
            {
                sb.Append(Encoding.UTF8.GetString(buf.ToArray())); buf.Clear();
                if (!skipSpecialTokens) sb.Append(s);
                continue;
            }
            buf.AddRange(_bytes[id]);
        }
        sb.Append(Encoding.UTF8.GetString(buf.ToArray()));
        return sb.ToString();
    }

    public override int? TokenToId(string token) =>
        _specialIds.TryGetValue(token, out var id) ? id : _bytes.FindIndex(b => b.Length > 0 && Encoding.UTF8.GetString(b) == token) is var i and >= 0 ? i : null;

    public override string? IdToToken(int id) =>
        (uint)id >= (uint)_bytes.Count ? null : _special[id] ?? Encoding.UTF8.GetString(_bytes[id]);

    public int Id(string special) => _specialIds[special];
}
