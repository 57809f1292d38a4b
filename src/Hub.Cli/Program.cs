Console.WriteLine("hub");
