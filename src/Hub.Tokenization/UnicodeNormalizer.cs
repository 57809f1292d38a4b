using System.Globalization;
using System.Text;

namespace Hub.Tokenization;

/// <summary>
/// Unicode normalization (NFC/NFD/NFKC/NFKD) and BERT's accent stripping, implemented here from generated Unicode tables.
/// Why not <see cref="string.Normalize()"/>: under <c>InvariantGlobalization</c> (this solution's setting, and common in
/// containers) .NET has no ICU and <c>Normalize</c> silently returns non-ASCII text unchanged, so "Café" would never lose
/// its accent and tokenization would drift without any error.
/// </summary>
/// <remarks>Tables: UnicodeTables.g.cs, generated from Python's unicodedata (decomposition, combining, NFC round-trip for exclusions).</remarks>
public static class UnicodeNormalizer
{
    private const int SBase = 0xAC00, LBase = 0x1100, VBase = 0x1161, TBase = 0x11A7, LCount = 19, VCount = 21, TCount = 28, NCount = VCount * TCount, SCount = LCount * NCount;

    private static readonly Dictionary<int, int> _ccc = new();
    private static readonly Dictionary<int, int[]> _canon = new();
    private static readonly Dictionary<int, int[]> _compat = new();
    private static readonly Dictionary<long, int> _compose = new();

    static UnicodeNormalizer()
    {
        var c = UnicodeTables.Ccc;
        for (int i = 0; i < c.Length; i += 2) _ccc[c[i]] = c[i + 1];
        var d = UnicodeTables.Decompositions;
        var rawCanon = new Dictionary<int, int[]>();
        var rawCompat = new Dictionary<int, int[]>();
        for (int i = 0; i < d.Length;)
        {
            int cp = d[i], kind = d[i + 1], n = d[i + 2];
            var parts = d.AsSpan(i + 3, n).ToArray();
            i += 3 + n;
            if (kind == 1) rawCompat[cp] = parts;
            else
            {
                rawCanon[cp] = parts;
                if (kind == 0 && n == 2) _compose[Key(parts[0], parts[1])] = cp;
            }
        }
        foreach (var cp in rawCanon.Keys) _canon[cp] = Expand(cp, rawCanon, null);
        foreach (var cp in rawCanon.Keys.Concat(rawCompat.Keys).Distinct()) _compat[cp] = Expand(cp, rawCanon, rawCompat);
    }

    private static long Key(int a, int b) => ((long)a << 21) | (uint)b;

    private static int[] Expand(int cp, Dictionary<int, int[]> canon, Dictionary<int, int[]>? compat)
    {
        int[]? parts = canon.TryGetValue(cp, out var p) ? p : compat is not null && compat.TryGetValue(cp, out var q) ? q : null;
        if (parts is null) return [cp];
        var list = new List<int>();
        foreach (var x in parts) list.AddRange(x == cp ? [x] : Expand(x, canon, compat));
        return list.ToArray();
    }

    private static int Ccc(int cp) => _ccc.TryGetValue(cp, out var v) ? v : 0;

    /// <summary>Normalizes <paramref name="text"/> to <paramref name="form"/> without ICU.</summary>
    public static string Normalize(string text, NormalizationForm form)
    {
        if (IsAscii(text)) return text;
        bool compat = form is NormalizationForm.FormKC or NormalizationForm.FormKD;
        var cps = Decompose(text, compat);
        if (form is NormalizationForm.FormC or NormalizationForm.FormKC) cps = Compose(cps);
        var sb = new StringBuilder(cps.Count);
        foreach (var cp in cps) sb.Append(char.ConvertFromUtf32(cp));
        return sb.ToString();
    }

    /// <summary>BERT's <c>_run_strip_accents</c>: NFD, then drop every nonspacing mark (category Mn).</summary>
    public static string StripAccents(string text)
    {
        if (IsAscii(text)) return text;
        var sb = new StringBuilder(text.Length);
        foreach (var cp in Decompose(text, false))
        {
            if (CharUnicodeInfo.GetUnicodeCategory(cp) == UnicodeCategory.NonSpacingMark) continue;
            if (cp > 0xFFFF) sb.Append(char.ConvertFromUtf32(cp)); else sb.Append((char)cp);
        }
        return sb.ToString();
    }

    private static bool IsAscii(string s)
    {
        foreach (var ch in s) if (ch >= 0x80) return false;
        return true;
    }

    private static List<int> Decompose(string text, bool compat)
    {
        var map = compat ? _compat : _canon;
        var result = new List<int>(text.Length + 8);
        for (int i = 0; i < text.Length; i++)
        {
            int cp = text[i];
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1])) cp = char.ConvertToUtf32(text[i], text[++i]);
            if (cp >= SBase && cp < SBase + SCount)
            {
                int s = cp - SBase;
                result.Add(LBase + s / NCount);
                result.Add(VBase + s % NCount / TCount);
                if (s % TCount != 0) result.Add(TBase + s % TCount);
            }
            else if (map.TryGetValue(cp, out var parts)) result.AddRange(parts);
            else result.Add(cp);
        }
        // canonical ordering: stable sort of each run of non-starters by combining class
        for (int i = 0; i < result.Count; i++)
        {
            if (Ccc(result[i]) == 0) continue;
            int j = i;
            while (j < result.Count && Ccc(result[j]) != 0) j++;
            if (j - i > 1)
            {
                var run = result.GetRange(i, j - i).Select((cp, k) => (cp, k)).OrderBy(t => Ccc(t.cp)).ThenBy(t => t.k).Select(t => t.cp).ToList();
                for (int k = 0; k < run.Count; k++) result[i + k] = run[k];
            }
            i = j - 1;
        }
        return result;
    }

    private static List<int> Compose(List<int> cps)
    {
        if (cps.Count == 0) return cps;
        var result = new List<int>(cps.Count);
        int starterIdx = -1, lastCcc = -1;
        foreach (var cp in cps)
        {
            int ccc = Ccc(cp);
            if (starterIdx >= 0 && (lastCcc < ccc || (lastCcc == 0 && result.Count - 1 == starterIdx)))
            {
                int starter = result[starterIdx];
                int composed = -1;
                if (starter >= LBase && starter < LBase + LCount && cp >= VBase && cp < VBase + VCount && result.Count - 1 == starterIdx)
                    composed = SBase + ((starter - LBase) * VCount + (cp - VBase)) * TCount;
                else if (starter >= SBase && starter < SBase + SCount && (starter - SBase) % TCount == 0 && cp > TBase && cp < TBase + TCount && result.Count - 1 == starterIdx)
                    composed = starter + (cp - TBase);
                else if (_compose.TryGetValue(Key(starter, cp), out var c)) composed = c;
                if (composed >= 0) { result[starterIdx] = composed; continue; }
            }
            if (ccc == 0) { starterIdx = result.Count; lastCcc = 0; }
            else lastCcc = ccc;
            result.Add(cp);
        }
        return result;
    }
}
