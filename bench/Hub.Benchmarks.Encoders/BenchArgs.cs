// Command line of the encoder bench: a fixed set of flags, and anything else is a usage error (a mistyped flag used to
// be ignored silently, so a run could measure other settings than the ones asked for).
using System.Globalization;

namespace Hub.Benchmarks.Encoders;

/// <summary>The encoder bench's options; <see cref="Parse"/> rejects unknown flags and bad values.</summary>
public sealed record BenchArgs(int Rounds, int Threads, string? ModelDir, bool Profile, bool Help)
{
    /// <summary>Usage text printed for <c>--help</c> and after a usage error.</summary>
    public const string Usage =
        """
        usage: dotnet run -c Release --project bench/Hub.Benchmarks.Encoders -- [options]
          --rounds N     alternating rounds per scenario (default 7)
          --threads N    threads for both engines (default 2)
          --model DIR    all-MiniLM-L6-v2 folder (default: shared/models/sentence-transformers/all-MiniLM-L6-v2)
          --profile [1]  print Hub's per-op time before the table
          --help         this text
        """;

    /// <summary>Parses <paramref name="args"/>; throws <see cref="ArgumentException"/> naming the bad flag or value.</summary>
    public static BenchArgs Parse(IReadOnlyList<string> args)
    {
        int rounds = 7, threads = 2;
        string? model = null;
        bool profile = false, help = false;
        for (int i = 0; i < args.Count; i++)
        {
            string a = args[i];
            string Value() => i + 1 < args.Count && !args[i + 1].StartsWith("--", StringComparison.Ordinal)
                ? args[++i] : throw new ArgumentException($"{a} needs a value");
            switch (a)
            {
                case "--rounds": rounds = Positive(a, Value()); break;
                case "--threads": threads = Positive(a, Value()); break;
                case "--model": model = Value(); break;
                case "--profile":
                    profile = true;
                    if (i + 1 < args.Count && args[i + 1] is "1" or "0") profile = args[++i] == "1";
                    break;
                case "--help" or "-h": help = true; break;
                default: throw new ArgumentException($"unknown argument '{a}'");
            }
        }
        return new BenchArgs(rounds, threads, model, profile, help);
    }

    private static int Positive(string flag, string value) =>
        int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out int n) && n > 0
            ? n : throw new ArgumentException($"{flag} {value}: expected a positive whole number");
}
