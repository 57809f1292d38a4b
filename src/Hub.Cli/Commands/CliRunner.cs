using System.CommandLine;

namespace Hub.Cli.Commands;

/// <summary>Shared plumbing: user errors become one line on stderr and exit code 1.</summary>
internal static class CliRunner
{
    public static int Run(Func<int> body)
    {
        try { return body(); }
        catch (HubException e) { Console.Error.WriteLine($"error: {OneLine(e.Message)}"); return 1; }
        catch (ArgumentException e) { Console.Error.WriteLine($"error: {OneLine(e.Message)}"); return 1; }
        catch (IOException e) { Console.Error.WriteLine($"error: {OneLine(e.Message)}"); return 1; }
        catch (UnauthorizedAccessException e) { Console.Error.WriteLine($"error: {OneLine(e.Message)}"); return 1; }
        catch (OperationCanceledException) { Console.Error.WriteLine("cancelled"); return 130; }
    }

    public static string OneLine(string s) => s.ReplaceLineEndings(" ");

    /// <summary>Model options shared by the run commands.</summary>
    public sealed class ModelArgs
    {
        public Argument<string> Model { get; } = new("model") { Description = "IR folder, Hugging Face checkpoint folder, original checkpoint (meta, llama2.c, FlagAI) or hub repo id" };
        public Option<string?> Subfolder { get; } = new("--subfolder") { Description = "folder inside the repo (e.g. stories260K for karpathy/tinyllamas)" };
        public Option<string?> Revision { get; } = new("--revision") { Description = "hub branch, tag or commit" };
        public Option<string?> From { get; } = new("--from") { Description = "checkpoint layout: hf, meta, llama2c, aquila (default: detect)" };
        public Option<int> Threads { get; } = new("--threads") { Description = "compute threads (default: all cores)" };
        public Option<int> MaxContext { get; } = new("--max-context") { Description = "KV cache capacity in positions" };

        public void AddTo(Command c)
        {
            c.Arguments.Add(Model);
            c.Options.Add(Subfolder); c.Options.Add(Revision); c.Options.Add(From); c.Options.Add(Threads); c.Options.Add(MaxContext);
        }

        public ModelOptions Options(ParseResult r, bool quiet = false) => new()
        {
            Subfolder = r.GetValue(Subfolder),
            Revision = r.GetValue(Revision),
            SourceFormat = r.GetValue(From),
            Threads = r.GetValue(Threads),
            MaxContext = r.GetValue(MaxContext),
            Progress = quiet ? null : new Progress<string>(m => Console.Error.WriteLine(m)),
        };
    }

    public static int[] ParseIds(string text)
    {
        try
        {
            return text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(s => int.Parse(s, System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        }
        catch (FormatException) { throw new ArgumentException($"--ids/--prompt-ids must be comma-separated integers, got '{text}'"); }
        catch (OverflowException) { throw new ArgumentException($"--ids/--prompt-ids has a value outside the int range: '{text}'"); }
    }
}
