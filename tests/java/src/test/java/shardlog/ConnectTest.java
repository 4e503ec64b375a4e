package shardlog;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.connect.cli.ConnectDistributed;
import org.apache.kafka.connect.runtime.Connect;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * A Kafka Connect distributed worker (connect-runtime 4.4) against shardlog: its internal topics
 * created compacted and checked by Connect itself, a file moved through a topic into another file
 * by the file connectors.
 */
class ConnectTest {
  static int freePort() throws Exception {
    try (ServerSocket s = new ServerSocket(0)) {
      return s.getLocalPort();
    }
  }

  static HttpResponse<String> post(HttpClient http, String url, String json) throws Exception {
    return http.send(
        HttpRequest.newBuilder(URI.create(url))
            .header("Content-Type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofString(json))
            .build(),
        HttpResponse.BodyHandlers.ofString());
  }

  /** POSTs a connector until the worker takes it (201) or the deadline passes; the last code. */
  static int create(HttpClient http, String base, String json, long deadline) throws Exception {
    int code = 0;
    while (System.currentTimeMillis() < deadline) {
      try {
        HttpResponse<String> r = post(http, base + "/connectors", json);
        code = r.statusCode();
        // An earlier try that timed out (500) may still have gone through.
        if (code == 201 || (code == 409 && r.body().contains("already exists"))) {
          return 201;
        }
      } catch (java.io.IOException e) {
        // not listening yet
      }
      Thread.sleep(200);
    }
    return code;
  }

  /**
   * Waits until the sink's group has committed the whole topic and the source's last position
   * ({@code "line": n}) is in Connect's offsets topic.
   */
  static void awaitCommitted(String id, String topic, int n, long deadline) throws Exception {
    Properties ap = new Properties();
    ap.put("bootstrap.servers", ClientsTest.bootstrap());
    try (Admin admin = Admin.create(ap)) {
      long sunk = -1;
      while (sunk < n && System.currentTimeMillis() < deadline) {
        var offsets =
            admin.listConsumerGroupOffsets("connect-sink").partitionsToOffsetAndMetadata().get();
        sunk =
            offsets.entrySet().stream()
                .filter(e -> e.getKey().topic().equals(topic) && e.getValue() != null)
                .mapToLong(e -> e.getValue().offset())
                .sum();
        if (sunk < n) {
          Thread.sleep(100);
        }
      }
      assertEquals(n, sunk, "the sink committed every line before the restart");
    }
    Properties cp = new Properties();
    cp.put("bootstrap.servers", ClientsTest.bootstrap());
    cp.put("key.deserializer", StringDeserializer.class.getName());
    cp.put("value.deserializer", StringDeserializer.class.getName());
    String want = "\"line\":" + n;
    try (KafkaConsumer<String, String> c = new KafkaConsumer<>(cp)) {
      List<TopicPartition> parts = new ArrayList<>();
      for (var p : c.partitionsFor(id + "-offsets")) {
        parts.add(new TopicPartition(p.topic(), p.partition()));
      }
      c.assign(parts);
      c.seekToBeginning(parts);
      boolean stored = false;
      while (!stored && System.currentTimeMillis() < deadline) {
        for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(100))) {
          stored |= r.value() != null && r.value().contains(want);
        }
      }
      assertTrue(stored, "the source's position " + want + " was stored before the restart");
    }
  }

  @Test
  @Timeout(120)
  void aDistributedWorkerMovesAFileThroughATopic() throws Exception {
    String id = "connect-" + UUID.randomUUID().toString().substring(0, 8);
    Path dir = Files.createTempDirectory("connect");
    Path in = dir.resolve("in.txt");
    Path out = dir.resolve("out.txt");
    List<String> lines = new ArrayList<>();
    for (int i = 0; i < 500; i++) {
      lines.add("line " + i + " of " + id);
    }
    Files.write(in, lines, StandardCharsets.UTF_8);
    int port = freePort();
    Map<String, String> w = new HashMap<>();
    w.put("bootstrap.servers", ClientsTest.bootstrap());
    w.put("group.id", id);
    w.put("config.storage.topic", id + "-configs");
    w.put("offset.storage.topic", id + "-offsets");
    w.put("status.storage.topic", id + "-status");
    // One node: one copy (Connect asks for 3 by default).
    w.put("config.storage.replication.factor", "1");
    w.put("offset.storage.replication.factor", "1");
    w.put("status.storage.replication.factor", "1");
    w.put("key.converter", "org.apache.kafka.connect.storage.StringConverter");
    w.put("value.converter", "org.apache.kafka.connect.storage.StringConverter");
    w.put("listeners", "http://127.0.0.1:" + port);
    w.put("offset.flush.interval.ms", "500");
    w.put("plugin.discovery", "hybrid_warn");
    Connect<?> connect = new ConnectDistributed().startConnect(w);
    try {
      HttpClient http = HttpClient.newHttpClient();
      String base = "http://127.0.0.1:" + port;
      String topic = id + "-lines";
      String src =
          "{\"name\":\"src\",\"config\":{\"connector.class\":"
              + "\"shardlog.LineFiles$Source\",\"tasks.max\":\"1\","
              + "\"file\":\""
              + in
              + "\",\"topic\":\""
              + topic
              + "\"}}";
      String sink =
          "{\"name\":\"sink\",\"config\":{\"connector.class\":"
              + "\"shardlog.LineFiles$Sink\",\"tasks.max\":\"1\","
              + "\"file\":\""
              + out
              + "\",\"topics\":\""
              + topic
              + "\"}}";
      long deadline = System.currentTimeMillis() + 60_000;
      // The REST API answers once the worker joined its group; while the
      // worker rebalances (after the first connector, for one) it answers
      // 409 and the request is to be repeated, as Connect's own tools do.
      assertEquals(201, create(http, base, src, deadline), "source connector created");
      assertEquals(201, create(http, base, sink, deadline), "sink connector created");
      List<String> got = List.of();
      while (System.currentTimeMillis() < deadline) {
        if (Files.exists(out)) {
          got = Files.readAllLines(out, StandardCharsets.UTF_8);
          if (got.size() >= lines.size()) {
            break;
          }
        }
        Thread.sleep(200);
      }
      assertEquals(lines, got, "the file arrived whole, in order");

      // The broker restarts under the running worker (the harness does it
      // when asked through SHARDLOG_CONTROL); lines added afterwards still
      // arrive, none twice.
      String control = System.getenv("SHARDLOG_CONTROL");
      if (control != null) {
        // Connect is at least once: what a task did not commit before the
        // broker goes away is done again (on Kafka too). The restart comes
        // once both tasks' progress is stored, so a line seen twice after it
        // is the broker's fault.
        awaitCommitted(id, topic, lines.size(), deadline);
        Path ask = Path.of(control, "restart");
        Path done = Path.of(control, "restarted");
        Files.writeString(ask, "please");
        long until = System.currentTimeMillis() + 60_000;
        while (!Files.exists(done) && System.currentTimeMillis() < until) {
          Thread.sleep(100);
        }
        assertTrue(Files.exists(done), "the harness restarted the broker");
        List<String> more = new ArrayList<>();
        for (int i = 500; i < 1000; i++) {
          more.add("line " + i + " of " + id);
        }
        Files.write(in, more, StandardCharsets.UTF_8, java.nio.file.StandardOpenOption.APPEND);
        lines.addAll(more);
        deadline = System.currentTimeMillis() + 60_000;
        while (System.currentTimeMillis() < deadline) {
          got = Files.readAllLines(out, StandardCharsets.UTF_8);
          if (got.size() >= lines.size()) {
            break;
          }
          Thread.sleep(200);
        }
        assertEquals(lines, got, "after the broker restart: every line once, in order");
      }

      // Connect's internal topics are compacted, as it requires.
      Properties ap = new Properties();
      ap.put("bootstrap.servers", ClientsTest.bootstrap());
      try (Admin admin = Admin.create(ap)) {
        for (String t : List.of(id + "-configs", id + "-offsets", id + "-status")) {
          ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, t);
          assertEquals(
              "compact",
              admin.describeConfigs(List.of(r)).all().get().get(r).get("cleanup.policy").value(),
              t);
        }
      }
    } finally {
      connect.stop();
      connect.awaitStop();
    }
  }
}
