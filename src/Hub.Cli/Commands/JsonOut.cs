using System.Text.Json;

namespace Hub.Cli.Commands;

/// <summary>JSON output shared by the commands that print numbers for scripts (<c>logits</c>, <c>embed</c>).</summary>
internal static class JsonOut
{
    /// <summary>
    /// Writes <c>{"name": [[...], ...]}</c> and a newline to stdout, streaming rows so a long logits matrix is never
    /// held as one string.
    /// </summary>
    public static void WriteMatrix(string name, IEnumerable<float[]> rows)
    {
        using var stdout = Console.OpenStandardOutput();
        using (var w = new Utf8JsonWriter(stdout))
        {
            w.WriteStartObject();
            w.WriteStartArray(name);
            foreach (var row in rows)
            {
                w.WriteStartArray();
                foreach (var v in row) w.WriteNumberValue(v);
                w.WriteEndArray();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        stdout.WriteByte((byte)'\n');
    }
}
