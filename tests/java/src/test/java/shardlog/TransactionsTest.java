package shardlog;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Properties;
import java.util.UUID;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TransactionDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The Java transactional producer (kafka-clients 4.4, transaction version 2: partitions join on
 * Produce v12, every EndTxn bumps the epoch) across kill -9 of the broker, once inside a
 * transaction (its records acknowledged, the commit still to come) and once between two: a
 * read_committed consumer reads every committed record exactly once and no aborted one.
 */
class TransactionsTest {
  /** Asks the harness for a kill -9 and restart of the broker; returns once it is back. */
  static boolean killBroker() throws Exception {
    String control = System.getenv("SHARDLOG_CONTROL");
    if (control == null) {
      return false; // run by hand against a broker the test does not own
    }
    Path done = Path.of(control, "killed");
    Files.deleteIfExists(done);
    Files.writeString(Path.of(control, "kill"), "please");
    long until = System.currentTimeMillis() + 60_000;
    while (!Files.exists(done) && System.currentTimeMillis() < until) {
      Thread.sleep(50);
    }
    assertTrue(Files.exists(done), "the harness killed and restarted the broker");
    return true;
  }

  @Test
  @Timeout(180)
  void committedTransactionsAreReadOnceAcrossKill9OfTheBroker() throws Exception {
    String topic = "javatx-" + UUID.randomUUID();
    try (Admin admin = Admin.create(ClientsTest.common())) {
      admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1))).all().get();
    }
    Properties pp = ClientsTest.common();
    pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    pp.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, "tx-" + topic);
    pp.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "60000");
    pp.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "120000");
    List<String> committed = new ArrayList<>();
    int kills = 0;
    try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
      producer.initTransactions();
      for (int t = 0; t < 8; t++) {
        producer.beginTransaction();
        List<String> values = new ArrayList<>();
        for (int i = 0; i < 50; i++) {
          String v = "t" + t + "-" + i;
          producer.send(new ProducerRecord<>(topic, "k" + i, v));
          values.add(v);
        }
        if (t == 2) {
          // Inside the transaction: its records are acknowledged, the
          // coordinator holds it Ongoing; the commit goes to the restarted
          // broker.
          producer.flush();
          kills += killBroker() ? 1 : 0;
        }
        if (t % 3 == 1) {
          producer.abortTransaction();
        } else {
          producer.commitTransaction();
          committed.addAll(values);
        }
        if (t == 4) {
          kills += killBroker() ? 1 : 0; // between two transactions
        }
      }
    }
    // Transaction version 2 (the broker finalizes it; this client speaks
    // it): every end bumps the producer's epoch, eight transactions ended,
    // so the coordinator holds epoch 8 or more (a recovery may add one).
    // Under version 1 it would still be initTransactions' epoch, 0.
    try (Admin admin = Admin.create(ClientsTest.common())) {
      String id = "tx-" + topic;
      TransactionDescription d = admin.describeTransactions(List.of(id)).description(id).get();
      assertTrue(d.producerEpoch() >= 8, d.toString());
    }
    Properties cp = ClientsTest.common();
    cp.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
    cp.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    cp.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    List<String> got = new ArrayList<>();
    try (KafkaConsumer<String, String> c = new KafkaConsumer<>(cp)) {
      List<TopicPartition> parts = List.of(new TopicPartition(topic, 0), new TopicPartition(topic, 1));
      c.assign(parts);
      c.seekToBeginning(parts);
      long deadline = System.currentTimeMillis() + 30_000;
      while (got.size() < committed.size() && System.currentTimeMillis() < deadline) {
        for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
          got.add(r.value());
        }
      }
      // A little longer: an aborted or repeated record would show up now.
      for (int i = 0; i < 5; i++) {
        for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
          got.add(r.value());
        }
      }
    }
    Collections.sort(got);
    Collections.sort(committed);
    assertEquals(committed, got, "every committed record once, no aborted one");
    assertEquals(System.getenv("SHARDLOG_CONTROL") == null ? 0 : 2, kills);
  }
}
