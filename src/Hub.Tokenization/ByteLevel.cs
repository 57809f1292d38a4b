using System.Text;

namespace Hub.Tokenization;

/// <summary>
/// GPT-2's <c>bytes_to_unicode</c>: every byte gets a printable character so byte-level BPE vocabularies are plain
/// strings (space is <c>Ġ</c>, newline <c>Ċ</c>). Decoding maps the characters back to bytes.
/// </summary>
public static class ByteLevel
{
    /// <summary>Character of each byte.</summary>
    public static readonly char[] ByteToChar = Build();
    private static readonly Dictionary<char, byte> _charToByte = Enumerable.Range(0, 256).ToDictionary(b => ByteToChar[b], b => (byte)b);

    private static char[] Build()
    {
        var map = new char[256];
        var direct = new bool[256];
        for (int b = '!'; b <= '~'; b++) direct[b] = true;
        for (int b = 0xA1; b <= 0xAC; b++) direct[b] = true;
        for (int b = 0xAE; b <= 0xFF; b++) direct[b] = true;
        int n = 0;
        for (int b = 0; b < 256; b++) map[b] = direct[b] ? (char)b : (char)(256 + n++);
        return map;
    }

    /// <summary>Maps UTF-8 of <paramref name="text"/> to byte-level characters.</summary>
    public static string Encode(string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        var chars = new char[bytes.Length];
        for (int i = 0; i < bytes.Length; i++) chars[i] = ByteToChar[bytes[i]];
        return new string(chars);
    }

    /// <summary>Appends the bytes a byte-level token stands for; false when it holds a character outside the table.</summary>
    public static bool TryAppendBytes(string token, List<byte> sink)
    {
        foreach (var c in token)
        {
            if (!_charToByte.TryGetValue(c, out var b)) return false;
            sink.Add(b);
        }
        return true;
    }
}
